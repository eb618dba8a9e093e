"""Where a run is (:class:`Progress`, saved in every checkpoint), how much of its budget it has used, and
whether a checkpoint may be resumed."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seq2seq.config import Config, TrainConfig, to_dict
from seq2seq.errors import ConfigError, Seq2SeqError

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
    history: list[dict[str, Any]] = field(default_factory=list)


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def check_resumable(payload: dict[str, Any], cfg: Config, path: Path) -> None:
    """``cfg`` may resume the checkpoint only with the same language pair and model, and if it is unfinished."""
    pair = [cfg.data.src_lang, cfg.data.tgt_lang]
    if payload.get("pair") != pair:
        raise ConfigError(f"{path} was trained on {'-'.join(payload.get('pair') or ['?'])}, not on the requested "
                          f"{'-'.join(pair)}; resume with the same data.src_lang / data.tgt_lang")
    if payload["config"]["model"] != to_dict(cfg.model):
        raise ConfigError(f"{path} was trained with a different model config; resume with the same model settings")
    for group in ("optim", "train"):  # allowed (a longer budget, say), but the schedule changes with them
        saved, now = payload["config"].get(group, {}), to_dict(getattr(cfg, group))
        changed = sorted(k for k in now if k not in saved or saved[k] != now[k])
        if changed:
            log.warning("resuming %s with other %s settings than it was trained with: %s", path, group,
                        ", ".join(f"{k}={saved.get(k, '(unset)')} -> {now[k]}" for k in changed))
    if payload["progress"]["finished"]:
        raise ConfigError(f"{path} belongs to a finished run; there is nothing to resume: start a new run "
                          "in a new hydra.run.dir")
