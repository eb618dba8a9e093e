"""Shared fixtures: a small model trained once per session on the toy reverse task."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from seq2seq import cpu

cpu.openmp_defaults()  # as the console scripts do, before torch starts OpenMP: a busy CI machine stays usable

import pytest  # noqa: E402
import torch  # noqa: E402

from seq2seq.cli.schemas import compose  # noqa: E402
from seq2seq.config import Config  # noqa: E402
from seq2seq.data.corpus import Batch, load_corpus  # noqa: E402
from seq2seq.inference.translator import Translator  # noqa: E402
from seq2seq.training import distributed  # noqa: E402
from seq2seq.training.trainer import Trainer  # noqa: E402

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
def translator(toy_run: Path) -> Translator:
    """The toy model's Translator, on the CPU."""
    return Translator.from_checkpoint(toy_run / "best.pt", device="cpu")


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run directory of a small bahdanau model trained on toy reverse (best.pt, last.pt, metrics)."""
    _, run_dir = train_toy(tmp_path_factory.mktemp("toy"))
    return run_dir


TINY_TRANSFORMER = ("model=transformer", "model.d_model=32", "model.ffn_size=64", "model.enc_layers=2",
                    "model.dec_layers=2")


@pytest.fixture(scope="session")
def transformer_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run directory of a tiny Transformer (2 + 2 layers, 4 heads of d_model 32) trained 120 steps on toy reverse
    (20 s on 2 cores): it writes a few words, and its heads and layers attend differently (the serve and page
    tests choose among them)."""
    _, run_dir = train_toy(tmp_path_factory.mktemp("transformer"), *TINY_TRANSFORMER, "train.max_steps=120",
                           "train.valid_every_steps=120")
    return run_dir


# ---- a trainer for single steps (step, distributed, trainer tests) ---------------------------------------

STEPS = 5


ATOL = 1e-5  # the same updates, the gradient summed in another order


NO_DROPOUT = ("model.dropout=0.0",)


def toy_trainer(tmp: Path, *overrides: str) -> Trainer:
    cfg = toy_config(tmp, *NO_DROPOUT, *overrides)
    run_dir = tmp / f"run{distributed.rank()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(cfg, load_corpus(cfg.data), run_dir)


def train_step(trainer: Trainer, *batches: Batch) -> float | None:
    """One optimizer step of ``trainer`` over ``batches``: its loss, or None when skipped."""
    return trainer.optimizer_step(list(batches), trainer.progress).loss


def step_batches(trainer: Trainer, n: int = STEPS) -> list[list[int]]:
    """The first ``n`` batches of epoch 1, as example positions."""
    return trainer.plan.epoch(1)[:n]


def assert_close_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=ATOL, msg=name)


# ---- the translate command -----------------------------------------------------------------------------

TRANSLATE = "from seq2seq.cli.main import translate; translate()"
LONG = " ".join("abcdefghij"[i % 10] for i in range(3000))  # far beyond data.max_len = 30 subwords


def run_translate(checkpoint: Path, data: bytes, *overrides: str) -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, "-c", TRANSLATE, f"checkpoint={checkpoint}", "threads=2", *overrides]
    env = {**os.environ, "PYTHONUTF8": "1"}
    return subprocess.run(cmd, input=data, capture_output=True, timeout=300, env=env)


MULTI30K = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"  # ../shared beside the clone
needs_multi30k = pytest.mark.skipif(not MULTI30K.is_dir(), reason="needs ../shared/data/multi30k")


def multi30k_subset(directory: Path, train: int, val: int) -> Path:
    """The first ``train`` / ``val`` pairs of Multi30k en-de as a corpus in ``directory`` (the default recipe,
    scaled down)."""
    from seq2seq.files import read_lines

    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("val", val)):
        for lang in ("en", "de"):
            lines = read_lines(MULTI30K / f"{split}.{lang}.gz")[:n]
            (directory / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory
