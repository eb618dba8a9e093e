"""Shared fixtures: a small model trained once per session on the toy reverse task."""

from __future__ import annotations

import os
from pathlib import Path

from seq2seq import cpu

cpu.openmp_defaults()  # as the console scripts do, before torch starts OpenMP: a busy CI machine stays usable

import pytest  # noqa: E402
import torch  # noqa: E402

from seq2seq.config import Config, compose  # noqa: E402
from seq2seq.data import load_corpus  # noqa: E402
from seq2seq.trainer import Trainer  # noqa: E402

torch.set_num_threads(int(os.environ.get("SEQ2SEQ_TEST_THREADS", "2")))  # fixed, for reproducible numbers


def toy_config(tmp: Path, *overrides: str) -> Config:
    """experiment=toy on the CPU (the numbers tests check were calibrated there), files under ``tmp``."""
    return compose(["experiment=toy", "device=cpu", f"data.dir={tmp / 'data'}", f"data.cache_dir={tmp / 'cache'}",
                    *overrides])


def train_toy(tmp: Path, *overrides: str) -> tuple[Trainer, Path]:
    cfg = toy_config(tmp, *overrides)
    run_dir = tmp / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, load_corpus(cfg.data), run_dir)
    trainer.run()
    return trainer, run_dir


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run directory of a small bahdanau model trained on toy reverse (best.pt, last.pt, metrics)."""
    _, run_dir = train_toy(tmp_path_factory.mktemp("toy"))
    return run_dir
