"""The training loop: epochs, steps, validation, early stopping, the learning-rate schedule, checkpoints.

The parts it drives each live in their own module: seq2seq/training/step.py builds the model and optimizer and
runs one optimizer step, seq2seq/checkpoint.py owns the checkpoint layout, seq2seq/training/validation.py
measures, seq2seq/training/progress.py keeps the position and the clock. Under torchrun every process runs this
same loop on its shard of each epoch (the plan and the step take care of that); rank 0 alone
validates, logs and writes files, and its decisions reach the other ranks.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from seq2seq.config import Config
from seq2seq.data.corpus import Corpus, padding_fraction
from seq2seq.device import resolve_device
from seq2seq.training.average import average_at_end
from seq2seq.training.heartbeat import Heartbeat
from seq2seq.training.metrics import RunLog
from seq2seq.training.plan import BatchPlan
from seq2seq.training.progress import (
    Clock,
    Progress,
    TrainingStopped,
    budget_used,
    cosine_rate,
    noam_rate,
    spent_budgets,
    warmup_rate,
)
from seq2seq.training.run_checkpoints import RunCheckpoints
from seq2seq.training.step import OptimizerStep, build
from seq2seq.training.validation import measure

__all__ = ["Progress", "Trainer", "TrainingStopped"]

log = logging.getLogger(__name__)


class Trainer:
    def __init__(self, cfg: Config, corpus: Corpus, run_dir: Path, device: torch.device | None = None) -> None:
        """``device``: where to train, resolved from ``cfg.device`` when not given."""
        self.cfg, self.corpus, self.run_dir = cfg, corpus, Path(run_dir)
        self.device = device or resolve_device(cfg.device)
        tok = corpus.tokenizer
        self.parts = build(cfg, tok.src_vocab_size, tok.tgt_vocab_size, self.device)
        self.model = self.parts.model
        self.optimizer_step = OptimizerStep(cfg, self.parts, self.device)
        self.plan = BatchPlan(corpus.train, cfg.train.batch_tokens, cfg.train.batch_sentences, cfg.seed,
                              corpus.resegmenter(cfg.data))
        self.clock = Clock(self.device)
        self.checkpoints = RunCheckpoints(self.run_dir, cfg, self.parts, tok, self.clock)
        self.progress = Progress()
        self.log = RunLog(self.run_dir)  # writes on rank 0 only
        self.epoch_batches = 1  # batches in the current epoch, all processes together
        self.heartbeat = Heartbeat(cfg.train.heartbeat_seconds, None if self.log.enabled else False)

    def resume(self, path: Path) -> None:
        self.progress = self.checkpoints.resume(path)
        # validations the killed process logged after its last save are dropped: they will run again
        self.log.rewrite(self.progress.history)
        p = self.progress
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, p.step, p.epoch, p.batch_in_epoch)

    def init_from(self, path: Path, reset: str) -> None:
        """Start this new run from the weights (and with ``reset=none`` the optimizer state) of ``path``."""
        self.checkpoints.init_from(path, reset)

    # ---- the loop ----------------------------------------------------------------------------

    def run(self) -> Progress:
        """Train until a limit or early stopping; validates and saves at the end. Ctrl-C saves last.pt."""
        p, t = self.progress, self.cfg.train
        log.info("model: %s attention, %d parameters; %d training pairs", self.cfg.model.attention,
                 self.model.num_parameters(), len(self.corpus.train))
        try:
            done = p.step > 0 and self.after_step()  # resumed with the budget spent: no step past it
            while not done and not self.run_epoch() and p.epoch < t.max_epochs:
                p.epoch, p.batch_in_epoch = p.epoch + 1, 0
                self.checkpoints.save("last.pt", p)  # after the epoch advanced: a resume never validates twice
            if p.epoch >= t.max_epochs and p.batch_in_epoch > 0 and p.stopped is None:
                log.info("train.max_epochs=%d reached", t.max_epochs)
                p.stopped = "train.max_epochs"
        except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (seq2seq/cli/launch.py)
            self.checkpoints.save("last.pt", p, every_rank=False)  # the other ranks may be anywhere
            log.warning("%s: saved %s; continue with resume=true", err or "interrupted", self.run_dir / "last.pt")
            raise
        p.finished = True
        self.checkpoints.save("last.pt", p)
        if t.average_at_end:
            average_at_end(self.model, self.corpus, self.cfg, self.run_dir, p.best_bleu)
        self.log.close()
        log.info("finished at step %d: best validation BLEU %.2f (best.pt)", p.step, p.best_bleu)
        return p

    def run_epoch(self) -> bool:
        """The rest of the current epoch, then validation; True when training should stop."""
        p, t = self.progress, self.cfg.train
        batches = self.plan.epoch(p.epoch)
        self.epoch_batches = len(batches)  # all processes together
        if p.batch_in_epoch == 0:
            log.info("epoch %d: %d batches, %.1f%% padding", p.epoch, len(batches),
                     100 * padding_fraction(self.plan.examples, batches))
        steps = self.plan.steps(batches, p.batch_in_epoch, t.accumulate)
        bar = tqdm(total=self.epoch_batches, initial=p.batch_in_epoch, desc=f"epoch {p.epoch}", unit="batch",
                   dynamic_ncols=True, leave=False, mininterval=1.0,
                   disable=None if self.log.enabled else True)  # no bar unless rank 0 on a terminal
        window_tokens, window_start = 0, time.monotonic()
        for group in steps:
            self.schedule()
            start = time.monotonic()
            result = self.optimizer_step([self.plan.batch(positions) for positions in group], p)
            p.train_s += time.monotonic() - start
            p.step, p.batch_in_epoch, p.tokens = p.step + 1, p.batch_in_epoch + result.batches, p.tokens + result.tokens
            window_tokens += result.tokens
            rate = window_tokens / max(1e-9, time.monotonic() - window_start)
            bar.update(result.batches)
            bar.set_postfix(loss="skip" if result.loss is None else f"{result.loss:.3f}", tok_s=f"{rate:.0f}",
                            lr=f"{self.parts.lr:.1e}", refresh=False)
            if p.step % t.log_every_steps == 0:
                self.log.train(p.step, p.epoch, result.loss, self.parts.lr, rate)
                window_tokens, window_start = 0, time.monotonic()
            elif self.heartbeat.due():  # its own clock: the run's clock is read only where it decides
                used = budget_used(t, p, self.epoch_batches, self.clock.agreed_s)
                self.heartbeat.beat(p.step, p.epoch, rate, used, self.clock.before_s)
            if self.after_step():
                bar.close()
                return True
        bar.close()
        return self.validate_round()

    def schedule(self) -> None:
        """optim.schedule=cosine (times optim.warmup_steps' linear rise) or noam: the next step's rate, from where
        the run is (a resume continues it)."""
        o, update = self.cfg.optim, self.progress.step + 1
        if o.schedule == "cosine":
            used = budget_used(self.cfg.train, self.progress, self.epoch_batches, self.clock.agreed_s)
            self.parts.set_lr(warmup_rate(cosine_rate(o.lr, o.min_lr, used), o.warmup_steps, update))
        elif o.schedule == "noam":
            self.parts.set_lr(noam_rate(o.lr, o.warmup_steps, update))

    def after_step(self) -> bool:
        """Periodic validation / saving inside the epoch, and the step and time limits."""
        p, t = self.progress, self.cfg.train
        if t.max_minutes is not None:
            self.clock.agree()  # rank 0's clock decides for every rank
        spent = spent_budgets(t, p, self.clock.agreed_s)
        if spent:
            log.info("%s reached: validating and saving", spent[0])
            p.stopped = spent[0].split("=")[0]
            self.validate_round()
            return True
        if t.valid_every_steps and p.step % t.valid_every_steps == 0:
            if self.validate_round():
                return True
            self.checkpoints.save("last.pt", p)
        elif t.save_every_steps and p.step % t.save_every_steps == 0:
            self.checkpoints.save("last.pt", p)
        return False

    # ---- validation --------------------------------------------------------------------------

    def validate_round(self) -> bool:
        """Validate (once per step); True when early stopping triggers."""
        p = self.progress
        if not p.history or p.history[-1]["step"] != p.step:
            self.validate()
        if p.bad_validations >= self.cfg.train.patience:
            log.info("early stopping: no BLEU gain in %d validations (train.patience)", p.bad_validations)
            p.stopped = "train.patience"
            return True
        return False

    def validate(self) -> dict[str, Any]:
        """Rank 0 measures; every rank updates the schedule and early-stopping state; rank 0 saves best.pt."""
        scores, bleu = measure(self.model, self.corpus, self.cfg)  # every rank gets rank 0's numbers
        p = self.progress
        record = {"kind": "valid", "step": p.step, "epoch": p.epoch, **scores, "lr": self.parts.lr}
        if self.cfg.optim.schedule == "plateau":
            self.parts.scheduler.step(bleu)
        improved = p.record(record, bleu)
        record = p.history[-1]
        self.log.validation(record, p, self.clock.elapsed())
        log.info("validation step %d epoch %d: loss %.3f ppl %.2f BLEU %.2f chrF %.2f lr %.2g%s", p.step, p.epoch,
                 record["loss"], record["ppl"], bleu, record["chrf"], record["lr"], " (best)" if improved else "")
        if improved:
            self.checkpoints.save("best.pt", p)
        if self.cfg.train.keep_checkpoints:
            self.checkpoints.keep(p, self.cfg.train.keep_checkpoints)
        return record
