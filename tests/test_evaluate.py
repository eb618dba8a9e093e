"""What seq2seq-evaluate reads (seq2seq/cli/evaluate.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from seq2seq.cli.evaluate import read_inputs, resolve_inputs
from seq2seq.cli.schemas import EvaluateConfig
from seq2seq.config import DataConfig
from seq2seq.errors import DataError


def test_resolve_inputs(tmp_path: Path) -> None:
    data = DataConfig(dir=str(tmp_path), src_lang="en", tgt_lang="de", test_split="test_2016")
    for name in ("test_2016.en", "test_2016.de", "val.en"):
        (tmp_path / name).write_text("a\n", encoding="utf-8")
    run = tmp_path / "run" / "best.pt"
    default = resolve_inputs(EvaluateConfig(checkpoint=str(run)), data)
    assert (default.name, default.src.name, default.out) == ("test_2016", "test_2016.en",
                                                             str(run.parent / "hyp.test_2016.de"))
    alias = resolve_inputs(EvaluateConfig(checkpoint=str(run), split="test"), data)
    assert alias.name == "test_2016"
    val = resolve_inputs(EvaluateConfig(checkpoint=str(run), split="val"), data)
    assert val.ref is None  # no val.de: only translate
    pair = resolve_inputs(EvaluateConfig(checkpoint=str(run), src=str(tmp_path / "val.en")), data)
    assert (pair.ref, pair.out) == (None, "-")
    with pytest.raises(DataError, match="no source file .*nope.en"):
        resolve_inputs(EvaluateConfig(checkpoint=str(run), src=str(tmp_path / "nope.en")), data)
    with pytest.raises(DataError, match="Splits in .*: test_2016, val; pick one with split="):
        resolve_inputs(EvaluateConfig(checkpoint=str(run), split="dev"), data)
    with pytest.raises(DataError, match="data directory .* does not exist here; pass data_dir="):
        resolve_inputs(EvaluateConfig(checkpoint=str(run), data_dir=str(tmp_path / "nowhere")), data)
    assert read_inputs(default) == (["a"], ["a"])
