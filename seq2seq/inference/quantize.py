"""int8 decoding on the CPU: PyTorch's dynamic quantization of a decoding model.

``quantize_dynamic`` stores the weights of every ``nn.Linear`` and of the encoder's ``nn.GRU`` /
``nn.LSTM`` as int8 (per tensor) once, and quantizes each activation on the fly, per call, from its
observed range (Jacob et al. 2018; PyTorch's "dynamic quantization"). The decoder's cell is made of
Linear layers stepped by hand (seq2seq/nn/decoder.py, StackedCell), so the recurrence, the attention's
projections, the deep output and the vocabulary projection all run as int8 matrix products;
embeddings, softmax, attention scores and search stay in float32. The model works on the CPU only.
docs/beyond.md, "int8 on the CPU", has the measured speed and BLEU.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from seq2seq.config import QUANTIZE
from seq2seq.errors import ConfigError

QUANTIZED_TYPES = {nn.Linear, nn.GRU, nn.LSTM}


def quantize(model: nn.Module, mode: str, device: torch.device) -> nn.Module:
    """A quantized copy of ``model`` (in eval mode) for decoding on ``device`` (the CPU)."""
    if mode not in QUANTIZE:
        raise ConfigError(f"unknown quantize {mode!r}; choose one of {', '.join(QUANTIZE)}")
    if device.type != "cpu":
        raise ConfigError(f"quantize={mode} is for decoding on the CPU, not on {device}; add device=cpu, "
                          "or leave quantize unset on a GPU")
    with warnings.catch_warnings():  # torch 2.10+ announces the move of quantization to torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model.eval(), QUANTIZED_TYPES, dtype=torch.qint8)
