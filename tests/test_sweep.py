"""Multirun: job directories named after their overrides; the summary table of a sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seq2seq.cli import sweep


def fake_job(sweep_dir: Path, overrides: list[str], bleus: list[float]) -> None:
    job = sweep_dir / sweep.dirname(",".join(overrides))
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (job / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "bleu": b}) + "\n" for i, b in enumerate(bleus)))


def test_dirname_is_one_path_component() -> None:
    assert sweep.dirname("model/attention=luong_dot,train.max_steps=5") == "model-attention=luong_dot,train.max_steps=5"
    assert sweep.dirname("") == "defaults" and len(sweep.dirname("x" * 500)) == 193
    assert sweep.dirname("x" * 300 + "a") != sweep.dirname("x" * 300 + "b")


def test_summary_lists_what_varies_best_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_job(tmp_path, ["experiment=toy", "model/attention=bahdanau"], [10.0, 42.5, 40.0])
    fake_job(tmp_path, ["experiment=toy", "model/attention=luong_dot"], [50.25])
    fake_job(tmp_path, ["experiment=toy", "model/attention=none"], [])
    monkeypatch.setattr(sweep, "SWEEP_DIRS", [tmp_path])
    out = "\n".join(sweep.report())
    lines = out.strip().splitlines()
    assert "(every job: experiment=toy)" in lines[0]
    assert lines[2].startswith("model/attention=luong_dot") and "50.25" in lines[2]
    assert lines[3].startswith("model/attention=bahdanau") and "42.50" in lines[3]
    assert lines[4].startswith("model/attention=none") and " - " in lines[4]
    assert (tmp_path / "summary.tsv").read_text().splitlines()[1].split("\t")[:2] == ["model/attention=luong_dot",
                                                                                       "50.25"]
