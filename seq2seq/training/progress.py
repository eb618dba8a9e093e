"""Where a run is (:class:`Progress`, saved in every checkpoint), its clock, and how much of its budget it
has used."""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from seq2seq.config import TrainConfig
from seq2seq.errors import Seq2SeqError
from seq2seq.training import distributed

log = logging.getLogger(__name__)


class TrainingStopped(Seq2SeqError):
    """Training cannot go on (for example, repeated non-finite losses); last.pt is intact."""


@dataclass
class Progress:
    """Where the run is; saved in every checkpoint so a resumed run continues exactly."""

    step: int = 0
    epoch: int = 1
    batch_in_epoch: int = 0  # batches of the current epoch already trained on, counted in the epoch's
    # whole (unsharded) batch list: all ranks together, every micro-batch of an accumulated step
    best_bleu: float = -1.0
    bad_validations: int = 0  # since the best BLEU, for early stopping
    bad_steps: int = 0  # non-finite losses in a row
    skipped_steps: int = 0
    tokens: int = 0  # target tokens trained on (all ranks)
    train_s: float = 0.0  # seconds spent in training steps (validation excluded)
    elapsed_s: float = 0.0  # training wall time before this process
    finished: bool = False
    stopped: str | None = None  # the setting that ended a finished run: train.max_steps, train.patience, ...
    history: list[dict[str, Any]] = field(default_factory=list)

    def record(self, record: dict[str, Any], bleu: float) -> bool:
        """Keep a validation record (``bleu`` unrounded); True when it is the best so far (early stopping counts
        the others)."""
        improved = bleu > self.best_bleu
        if improved:
            self.best_bleu, self.bad_validations = bleu, 0
        else:
            self.bad_validations += 1
        self.history.append(record | {"best": improved})
        return improved


def spent_budgets(t: TrainConfig, p: Progress, clock_s: float, finished: bool = False) -> list[str]:
    """The budgets of ``t`` that progress ``p`` has spent, as ``train.max_steps=N (step N)``; ``clock_s``: the
    training seconds so far. During training the loop ends epochs and early stopping itself, so only the step
    and time budgets are checked; for a ``finished`` run (may it continue?) the epochs and patience too."""
    spent = []
    if t.max_steps is not None and p.step >= t.max_steps:
        spent.append(f"train.max_steps={t.max_steps} (step {p.step})")
    if t.max_minutes is not None and clock_s >= 60 * t.max_minutes:
        spent.append(f"train.max_minutes={t.max_minutes} ({clock_s / 60:.1f} minutes)")
    if finished and (p.epoch > t.max_epochs or (p.epoch == t.max_epochs and p.stopped in ("train.max_epochs", None))):
        spent.append(f"train.max_epochs={t.max_epochs} (epoch {p.epoch})")
    if finished and p.bad_validations >= t.patience:
        spent.append(f"train.patience={t.patience} ({p.bad_validations} validations without a gain)")
    return spent


class Clock:
    """Training wall time (validation included) over this process and the runs it resumed."""

    def __init__(self, device: torch.device, before_s: float = 0.0) -> None:
        self.device = device
        self.restart(before_s)

    def restart(self, before_s: float) -> None:
        """Count on from ``before_s``, the time of the run this process resumes."""
        self.before_s, self.start, self.agreed_s = before_s, time.monotonic(), before_s

    def elapsed(self) -> float:
        return self.before_s + time.monotonic() - self.start

    def agree(self) -> float:
        """Rank 0's elapsed time, on every rank (they stop and schedule by the same clock); kept in agreed_s."""
        self.agreed_s = distributed.broadcast_float(self.elapsed(), self.device)
        return self.agreed_s


def budget_used(t: TrainConfig, p: Progress, epoch_batches: int, clock_s: float) -> float:
    """How far a run is through the first of its budgets to run out, 0 to 1: ``t.max_epochs`` (an epoch
    has ``epoch_batches`` batches), ``t.max_steps`` and ``t.max_minutes`` (``clock_s``: seconds so far)."""
    used = (p.epoch - 1 + p.batch_in_epoch / max(1, epoch_batches)) / t.max_epochs
    if t.max_steps is not None:
        used = max(used, p.step / t.max_steps)
    if t.max_minutes is not None:
        used = max(used, clock_s / (60 * t.max_minutes))
    return min(1.0, used)


def cosine_rate(peak: float, floor: float, used: float) -> float:
    """The learning rate after ``used`` (0 to 1) of the budget: half a cosine from ``peak`` down to ``floor``
    (SGDR without restarts, Loshchilov & Hutter 2017): large steps early, small ones to settle at the end."""
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * used))


def warmup_rate(rate: float, warmup: int, step: int) -> float:
    """``rate`` scaled by a linear rise over the first ``warmup`` updates (``step`` counts from 1): step / warmup of
    it until then, all of it after (Goyal et al. 2017's gradual warm-up); ``warmup`` 0 leaves it as it is."""
    return rate * min(1.0, max(step, 1) / warmup) if warmup else rate


def noam_rate(peak: float, warmup: int, step: int) -> float:
    """The rate of update ``step`` (from 1) under Vaswani et al. (2017)'s eq. (3), d_model^-0.5 min(step^-0.5,
    step warmup^-1.5), written with its peak: ``peak`` min(step / warmup, sqrt(warmup / step)), a linear rise to
    ``peak`` at step ``warmup``, then the inverse square root of the step (eq. 3 is this with peak =
    (d_model warmup)^-0.5: 7.0e-4 for their d_model 512 and 4000 warm-up steps)."""
    step = max(step, 1)
    return warmup_rate(peak * min(1.0, math.sqrt(warmup / step)), warmup, step)  # the cosine's warm-up rise


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
