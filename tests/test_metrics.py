"""What a run records (seq2seq/training/metrics.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import toy_trainer


def test_tensorboard_scalars_next_to_metrics(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = toy_trainer(tmp_path, "train.max_steps=2", "train.log_every_steps=1")
    trainer.run()
    events = EventAccumulator(str(trainer.run_dir / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/tokens_per_s", "valid/bleu", "valid/chrf", "valid/ppl"} <= tags
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    assert (trainer.run_dir / "metrics.jsonl").read_text().count("\n") == 1
