"""int8 decoding: the quantized toy model still translates the toy task; misuse is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.ao.nn.quantized import dynamic

from seq2seq.cli.schemas import EvaluateConfig
from seq2seq.data.corpus import split_lines
from seq2seq.errors import ConfigError
from seq2seq.inference.bleu import corpus_scores
from seq2seq.inference.quantize import quantize
from seq2seq.inference.translator import Translator


@pytest.fixture(scope="module")
def toy_test_split(translator: Translator) -> tuple[list[str], list[str]]:
    """The first 100 pairs of the toy corpus's test split: sources and references."""
    data = translator.config.data
    return split_lines(data, data.test_split, 100)


def test_a_quantized_model_translates_the_toy_task(toy_run: Path, toy_test_split: tuple[list[str], list[str]]) -> None:
    sources, refs = toy_test_split
    fp32 = Translator.from_checkpoint(toy_run / "best.pt", device="cpu")
    int8 = Translator.from_checkpoint(toy_run / "best.pt", device="cpu", quantize="int8")
    kinds = {type(m) for m in int8.model.modules()}
    assert dynamic.Linear in kinds and dynamic.GRU in kinds  # the decoder's Linear layers and the encoder's GRU
    assert nn_linear_count(int8.model) == 0
    hyps, reference_hyps = int8.translate(sources), fp32.translate(sources)
    assert corpus_scores(hyps, refs).bleu > 90
    assert sum(h == r for h, r in zip(hyps, reference_hyps, strict=True)) >= 90  # nearly all as fp32 translates


def test_quantize_returns_a_copy_and_leaves_the_model_alone(toy_run: Path) -> None:
    """A server or a benchmark keeps its fp32 model beside the int8 one: quantizing must not convert it."""
    model = Translator.from_checkpoint(toy_run / "best.pt", device="cpu").model
    before = {name: p.clone() for name, p in model.state_dict().items()}
    linears = nn_linear_count(model)
    int8 = quantize(model, "int8", torch.device("cpu"))
    assert nn_linear_count(model) == linears > 0 and nn_linear_count(int8) == 0
    assert not any(isinstance(m, (dynamic.Linear, dynamic.GRU)) for m in model.modules())
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


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
