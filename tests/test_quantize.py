"""int8 decoding: the quantized toy model still translates the toy task; misuse is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.ao.nn.quantized import dynamic

from seq2seq.cli.schemas import EvaluateConfig
from seq2seq.errors import ConfigError
from seq2seq.inference.bleu import corpus_scores
from seq2seq.inference.quantize import quantize
from seq2seq.inference.translator import Translator


@pytest.fixture(scope="module")
def test_pairs(toy_run: Path) -> tuple[list[str], list[str]]:
    from seq2seq.checkpoint import checkpoint_config, load_checkpoint

    data = checkpoint_config(load_checkpoint(toy_run / "best.pt")).data
    return [(Path(data.dir) / f"test.{lang}").read_text(encoding="utf-8").splitlines()[:100]
            for lang in (data.src_lang, data.tgt_lang)]


def test_a_quantized_model_translates_the_toy_task(toy_run: Path, test_pairs) -> None:
    sources, refs = test_pairs
    fp32 = Translator.from_checkpoint(toy_run / "best.pt", device="cpu")
    int8 = Translator.from_checkpoint(toy_run / "best.pt", device="cpu", quantize="int8")
    kinds = {type(m) for m in int8.model.modules()}
    assert dynamic.Linear in kinds and dynamic.GRU in kinds  # the decoder's Linear layers and the encoder's GRU
    assert nn_linear_count(int8.model) == 0
    hyps, reference_hyps = int8.translate(sources), fp32.translate(sources)
    assert corpus_scores(hyps, refs).bleu > 90
    assert sum(h == r for h, r in zip(hyps, reference_hyps, strict=True)) >= 90  # nearly all as fp32 translates
    assert Translator.from_checkpoint(toy_run / "best.pt", device="cpu").model is not int8.model


def nn_linear_count(model: torch.nn.Module) -> int:
    return sum(type(m) is torch.nn.Linear for m in model.modules())


def test_quantize_is_for_the_cpu_and_int8_only(toy_run: Path) -> None:
    model = Translator.from_checkpoint(toy_run / "best.pt", device="cpu").model
    with pytest.raises(ConfigError, match="quantize=int8 is for decoding on the CPU, not on cuda.*add device=cpu"):
        quantize(model, "int8", torch.device("cuda"))
    with pytest.raises(ConfigError, match="unknown quantize 'int4'; choose one of int8"):
        quantize(model, "int4", torch.device("cpu"))
    with pytest.raises(ConfigError, match="unknown quantize 'fp16'; choose one of int8"):
        EvaluateConfig(checkpoint="x.pt", quantize="fp16")
