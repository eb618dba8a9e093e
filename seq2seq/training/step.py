"""What training updates, and one optimizer step over it.

:func:`build` makes the model (wrapped for DistributedDataParallel under torchrun), Adam, the plateau
scheduler and, for fp16, the gradient scaler. :class:`OptimizerStep` runs one optimizer step over a group of
micro-batches: autocast, gradient accumulation (DDP's ``no_sync`` on all but the last), clipping, and
the skip of a step whose loss or gradient is not finite. Everything about several processes stays in
here and in seq2seq/training/distributed.py; the loop (seq2seq/training/trainer.py) never sees it.

Shapes: B batch, T target length, V target vocabulary.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from seq2seq.config import Config
from seq2seq.data.corpus import Batch
from seq2seq.device import resolve_precision
from seq2seq.nn.loss import coverage_loss, token_loss
from seq2seq.nn.model import Seq2Seq
from seq2seq.training import distributed
from seq2seq.training.progress import Progress, TrainingStopped, seed_everything

log = logging.getLogger(__name__)


@dataclass
class Parts:
    """Everything a training step changes; seq2seq/checkpoint.py saves and restores all of it."""

    model: Seq2Seq
    net: torch.nn.Module  # what the step calls: the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Adam
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    scaler: torch.amp.GradScaler | None  # fp16 only
    precision: str  # what the forward pass runs in: fp32 | bf16 | fp16 (train.precision resolved)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr


def build(cfg: Config, src_vocab: int, tgt_vocab: int, device: torch.device) -> Parts:
    """The model on ``device`` (the same initial weights on every rank), its optimizer and schedule."""
    precision, why = resolve_precision(cfg.train.precision, device)
    log.info("precision: %s (%s)", precision, why)
    seed_everything(cfg.seed)
    model = Seq2Seq(cfg.model, src_vocab, tgt_vocab).to(device)
    net: torch.nn.Module = model
    if distributed.world_size() > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)  # copies rank 0's weights
        seed_everything(cfg.seed + distributed.rank())  # other dropout masks on every rank
    o = cfg.optim
    optimizer = torch.optim.Adam(model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2),
                                 weight_decay=o.weight_decay, fused=True)  # one kernel per step: 3x faster
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=o.lr_decay, patience=o.lr_patience, min_lr=o.min_lr)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    return Parts(model, net, optimizer, scheduler, scaler, precision)


@dataclass
class StepResult:
    loss: float | None  # label-smoothed cross-entropy per target token; None: the step was skipped
    tokens: int  # target tokens trained on, all ranks together
    batches: int  # batches of the epoch's (global) batch list this step used, all ranks together


class OptimizerStep:
    """One optimizer step over accumulated micro-batches, on every rank at once."""

    def __init__(self, cfg: Config, parts: Parts, device: torch.device) -> None:
        self.cfg, self.parts, self.device = cfg, parts, device
        self.world = distributed.world_size()

    def __call__(self, batches: Sequence[Batch], progress: Progress) -> StepResult:
        """The summed loss is divided by the target tokens of all micro-batches on all ranks, and multiplied
        by the world size because DDP averages gradients over ranks: the step equals one process training
        on all these batches at once."""
        parts = self.parts
        parts.model.train()
        parts.optimizer.zero_grad(set_to_none=True)
        tokens = distributed.sum_int(sum(b.n_tgt_tokens for b in batches), self.device)
        total = torch.zeros((), device=self.device)
        try:
            for i, batch in enumerate(batches):
                last = i == len(batches) - 1
                with contextlib.nullcontext() if last or self.world == 1 else parts.net.no_sync():
                    loss = self._loss(batch) / tokens
                    total += loss.detach()
                    if self.world > 1 or bool(torch.isfinite(loss)):  # all ranks must join DDP's all-reduce
                        self._backward(loss * self.world if self.world > 1 else loss)
        except torch.OutOfMemoryError:
            raise TrainingStopped(
                f"out of memory on a batch of {batch.src.size(0)} sentences ({batch.src.numel()} source and "
                f"{batch.tgt_in.numel()} target positions); lower train.batch_tokens (now "
                f"{self.cfg.train.batch_tokens}) and resume=true") from None
        loss_value = float(distributed.sum_tensor(total))  # non-finite on one rank: skipped on all
        done = StepResult(loss_value, tokens, self.world * len(batches))
        if math.isfinite(loss_value) and self._update():
            progress.bad_steps = 0
            return done
        self._skip(batches[0], loss_value, progress)
        return StepResult(None, tokens, done.batches)

    def _loss(self, batch: Batch) -> torch.Tensor:
        """Summed cross-entropy of one micro-batch, the forward pass under autocast for bf16 / fp16."""
        batch = Batch(*(t.to(self.device, non_blocking=True) for t in batch))
        precision = self.parts.precision
        with contextlib.nullcontext() if precision == "fp32" else torch.autocast(
                self.device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16):
            lam = self.cfg.optim.coverage_loss  # See et al. (2017), eq. (13): loss + lambda * coverage loss
            inputs = (batch.src, batch.src_lens, batch.tgt_in)
            logits, weights = self.parts.net(*inputs, need_weights=True) if lam else self.parts.net(*inputs)
        loss = token_loss(logits.float(), batch.tgt_out, self.cfg.optim.label_smoothing)
        return loss + lam * coverage_loss(weights.float(), batch.tgt_out) if lam else loss

    def _backward(self, loss: torch.Tensor) -> None:
        scaler = self.parts.scaler
        (loss if scaler is None else scaler.scale(loss)).backward()

    def _update(self) -> bool:
        """Clip and step; False when the gradient is not finite (fp16: the scaler skips and rescales)."""
        parts = self.parts
        if parts.scaler is not None:
            parts.scaler.unscale_(parts.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(parts.model.parameters(), self.cfg.optim.clip_norm or math.inf)
        if parts.scaler is not None:
            parts.scaler.step(parts.optimizer)
            parts.scaler.update()
            return True
        if torch.isfinite(norm):
            parts.optimizer.step()
            return True
        return False

    def _skip(self, batch: Batch, loss: Any, p: Progress) -> None:
        p.bad_steps += 1
        p.skipped_steps += 1
        log.warning("step %d: non-finite loss or gradient (loss %s, batch of %d sentences); step skipped",
                    p.step, loss, batch.src.size(0))
        if p.bad_steps >= self.cfg.train.max_bad_steps:
            raise TrainingStopped(
                f"{p.bad_steps} non-finite losses or gradients in a row at step {p.step}; training stopped and "
                f"last.pt keeps the last good state. Lower optim.lr or raise optim.clip_norm, then resume=true")
