"""The training loop: epochs, validation, early stopping, learning-rate schedule, checkpoints, resume.

Under torchrun every rank runs this loop on its shard of each epoch's batches (seq2seq/distributed.py);
rank 0 alone validates, logs and writes files, and its decisions reach the other ranks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from seq2seq import distributed
from seq2seq.checkpoint import load_checkpoint, save_checkpoint, tokenizer_payload
from seq2seq.config import FP16_ON_CPU, Config, to_dict
from seq2seq.data import Batch, BatchPlan, Corpus, padding_fraction
from seq2seq.errors import ConfigError
from seq2seq.evaluate import score, translate_ids, validation_loss
from seq2seq.loss import token_loss
from seq2seq.metrics import RunLog
from seq2seq.model import Seq2Seq
from seq2seq.progress import Progress, TrainingStopped, budget_used, check_resumable, cosine_rate, seed_everything

__all__ = ["Progress", "Trainer", "TrainingStopped", "check_resumable", "token_loss"]

log = logging.getLogger(__name__)


class Trainer:
    def __init__(self, cfg: Config, corpus: Corpus, run_dir: Path) -> None:
        self.cfg, self.corpus, self.run_dir = cfg, corpus, Path(run_dir)
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.device = distributed.resolve_device(cfg.device)
        if cfg.train.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError(FP16_ON_CPU)
        seed_everything(cfg.seed)
        tok = corpus.tokenizer
        self.model = Seq2Seq(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size).to(self.device)
        self.net = self.model  # what training calls: the model, or its DistributedDataParallel wrapper
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(self.model)  # copies rank 0's weights
            seed_everything(cfg.seed + self.rank)  # other dropout masks on every rank
        o = cfg.optim
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2),
                                          weight_decay=o.weight_decay, fused=True)  # one kernel per step: 3x faster
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=o.lr_decay, patience=o.lr_patience, min_lr=o.min_lr)
        self.scaler = torch.amp.GradScaler("cuda") if cfg.train.precision == "fp16" else None
        self.plan = BatchPlan(corpus.train, cfg.train.batch_tokens, cfg.train.batch_sentences, cfg.seed,
                              corpus.resegmenter(cfg.data))
        self.progress = Progress()
        self.log = RunLog(self.run_dir, enabled=distributed.is_main())
        self._start = time.monotonic()
        self._clock_s = 0.0  # rank 0's elapsed() at the last step (train.max_minutes only)
        self._epoch_batches = 1  # batches in the current epoch (all ranks)

    # ---- checkpoints -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "config": to_dict(self.cfg),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "progress": to_dict(self.progress) | {"elapsed_s": self.elapsed()},  # wall time so far
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()}
            | ({"cuda": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {}),
            "tokenizer": tokenizer_payload(self.corpus.tokenizer),
            "pair": [self.cfg.data.src_lang, self.cfg.data.tgt_lang],
        } | ({"scaler": self.scaler.state_dict()} if self.scaler is not None else {})

    def save(self, name: str) -> None:
        """Rank 0 writes ``run_dir/name``; the other ranks hold the same weights and progress."""
        if distributed.is_main():
            save_checkpoint(self.run_dir / name, self.state())

    def resume(self, path: Path) -> None:
        """Every rank loads the same checkpoint (rank 0's RNG state; other ranks re-seed from it)."""
        payload = load_checkpoint(path)
        check_resumable(payload, self.cfg, path)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        for group in self.optimizer.param_groups:  # checkpoints from before fused Adam stay fast
            group["fused"], group["foreach"] = True, None
        self.scheduler.load_state_dict(payload["scheduler"])
        self.progress = Progress(**payload["progress"])
        self._start = time.monotonic()  # elapsed() = time before the resume + time since
        self._clock_s = self.progress.elapsed_s
        torch.set_rng_state(payload["rng"]["torch"])
        if self.device.type == "cuda" and "cuda" in payload["rng"]:  # GPU dropout masks continue too
            torch.cuda.set_rng_state(payload["rng"]["cuda"], self.device)
        elif self.device.type == "cuda":
            log.info("%s was written on the CPU: GPU dropout masks start afresh (not an exact resume)", path)
        if self.scaler is not None and "scaler" in payload:
            self.scaler.load_state_dict(payload["scaler"])
        python_state = payload["rng"]["python"]
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
        if self.rank:
            seed_everything(self.cfg.seed + 1000 * self.progress.step + self.rank)
        # validations the killed process logged after its last save are dropped: they will run again
        self.log.rewrite(self.progress.history)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.progress.step,
                 self.progress.epoch, self.progress.batch_in_epoch)

    def elapsed(self) -> float:
        """Training wall time (validation included) over this process and the ones it resumed."""
        return self.progress.elapsed_s + time.monotonic() - self._start

    # ---- one step ----------------------------------------------------------------------------

    def train_step(self, *batches: Batch) -> float | None:
        """One optimizer step over ``batches`` (accumulated micro-batches); returns the loss per target
        token, or None if the step was skipped.

        The summed loss is divided by the target tokens of all micro-batches on all ranks, and multiplied
        by the world size because DDP averages gradients over ranks: the step equals one process training
        on all these batches at once.
        """
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        tokens = distributed.sum_int(sum(b.n_tgt_tokens for b in batches), self.device)
        self.progress.tokens += tokens
        total = torch.zeros((), device=self.device)
        try:
            for i, batch in enumerate(batches):
                last = i == len(batches) - 1
                with contextlib.nullcontext() if last or self.world == 1 else self.net.no_sync():
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
        if math.isfinite(loss_value) and self._update():
            self.progress.bad_steps = 0
            return loss_value
        return self._skip_step(batches[0], loss_value)

    def _loss(self, batch: Batch) -> torch.Tensor:
        """Summed cross-entropy of one micro-batch, the forward pass under autocast for bf16 / fp16."""
        batch = Batch(*(t.to(self.device, non_blocking=True) for t in batch))
        precision = self.cfg.train.precision
        with contextlib.nullcontext() if precision == "fp32" else torch.autocast(
                self.device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16):
            logits, _ = self.net(batch.src, batch.src_lens, batch.tgt_in)  # (B, T, V)
        return token_loss(logits.float(), batch.tgt_out, self.cfg.optim.label_smoothing)

    def _backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def _update(self) -> bool:
        """Clip and step; False when the gradient is not finite (fp16: the scaler skips and rescales)."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_norm or math.inf)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            return True
        if torch.isfinite(norm):
            self.optimizer.step()
            return True
        return False

    def _skip_step(self, batch: Batch, loss: float) -> None:
        p = self.progress
        p.bad_steps += 1
        p.skipped_steps += 1
        log.warning("step %d: non-finite loss or gradient (loss %s, batch of %d sentences); step skipped",
                    p.step, loss, batch.src.size(0))
        if p.bad_steps >= self.cfg.train.max_bad_steps:
            raise TrainingStopped(
                f"{p.bad_steps} non-finite losses or gradients in a row at step {p.step}; training stopped and "
                f"last.pt keeps the last good state. Lower optim.lr or raise optim.clip_norm, then resume=true")
        return None

    # ---- validation --------------------------------------------------------------------------

    def measure(self) -> tuple[dict[str, Any], float]:
        """Loss, perplexity, and greedy BLEU / chrF on detokenized text (rank 0); and the unrounded BLEU."""
        loss = validation_loss(self.model, self.corpus.valid, self.cfg.train.valid_batch_tokens)
        sources = [e.src for e in self.corpus.valid]
        results = translate_ids(self.model, sources, self.cfg.decode, greedy=True)
        hyps = self.corpus.tokenizer.decode_tgt([r.tokens[0][0] for r in results])
        scores = score(hyps, self.corpus.valid_refs)
        p = self.progress
        return {"kind": "valid", "step": p.step, "epoch": p.epoch, "loss": round(loss, 6),
                "ppl": round(math.exp(min(loss, 50)), 4), "bleu": round(scores.bleu, 4),
                "chrf": round(scores.chrf, 4), "lr": self.optimizer.param_groups[0]["lr"]}, scores.bleu

    def validate(self) -> dict[str, Any]:
        """Rank 0 measures; every rank updates the schedule and early-stopping state; rank 0 saves best.pt."""
        record, bleu = distributed.broadcast_object(self.measure() if distributed.is_main() else None)
        p = self.progress
        if self.cfg.optim.schedule == "plateau":
            self.scheduler.step(bleu)
        improved = bleu > p.best_bleu
        if improved:
            p.best_bleu, p.bad_validations = bleu, 0
        else:
            p.bad_validations += 1
        record["best"] = improved
        p.history.append(record)
        timing = {"step": record["step"], "epoch": record["epoch"], "elapsed_s": round(self.elapsed(), 1),
                  "train_s": round(p.train_s, 1), "tokens_per_s": round(p.tokens / max(p.train_s, 1e-9), 1),
                  "bleu": record["bleu"]}
        self.log.validation(record, timing)
        log.info("validation step %d epoch %d: loss %.3f ppl %.2f BLEU %.2f chrF %.2f lr %.2g%s", p.step, p.epoch,
                 record["loss"], record["ppl"], bleu, record["chrf"], record["lr"],
                 " (best)" if improved else "")
        if improved:
            self.save("best.pt")
        return record

    # ---- the loop ----------------------------------------------------------------------------

    def limit_reached(self) -> str | None:
        """The step or time limit that ends training; rank 0's clock decides for every rank."""
        t, p = self.cfg.train, self.progress
        if t.max_minutes is not None:
            self._clock_s = distributed.broadcast_float(self.elapsed(), self.device)
        if t.max_steps is not None and p.step >= t.max_steps:
            return f"train.max_steps={t.max_steps} reached"
        if t.max_minutes is not None and self._clock_s >= 60 * t.max_minutes:
            return f"train.max_minutes={t.max_minutes} reached"
        return None

    def _schedule(self) -> None:
        """optim.schedule=cosine: the rate of the next step, from where the run is (so a resume continues it)."""
        o = self.cfg.optim
        if o.schedule == "cosine":
            lr = cosine_rate(o.lr, o.min_lr, budget_used(self.cfg.train, self.progress, self._epoch_batches,
                                                         self._clock_s))
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def run(self) -> Progress:
        """Train until a limit or early stopping; validates and saves at the end. Ctrl-C saves last.pt."""
        p, t = self.progress, self.cfg.train
        log.info("model: %s attention, %d parameters; %d training pairs", self.cfg.model.attention,
                 self.model.num_parameters(), len(self.corpus.train))
        try:
            while not self._run_epoch() and p.epoch < t.max_epochs:
                p.epoch, p.batch_in_epoch = p.epoch + 1, 0
                self.save("last.pt")  # saved after the epoch advanced, so a resume never validates twice
            if p.epoch >= t.max_epochs and p.batch_in_epoch > 0:
                log.info("train.max_epochs=%d reached", t.max_epochs)
        except KeyboardInterrupt:
            self.save("last.pt")
            log.warning("interrupted: saved %s; continue with resume=true", self.run_dir / "last.pt")
            raise
        p.finished = True
        self.save("last.pt")
        self.log.close()
        log.info("finished at step %d: best validation BLEU %.2f (best.pt)", p.step, p.best_bleu)
        return p

    def step_groups(self, batches: list[list[int]]) -> list[list[list[int]]]:
        """The rest of this epoch (``batches``: all of it) for this rank: groups of ``train.accumulate``
        batches, one per step.

        The epoch's batch list is built exactly as in a single process, then sharded (global batch i to
        rank i % world); step k of the epoch trains on global batches k*A*W .. (k+1)*A*W - 1, so
        ``batch_in_epoch`` (global) / world is this rank's position in its shard. The last step of an
        epoch may have fewer than A batches.
        """
        mine = distributed.shard(batches, self.rank, self.world)[self.progress.batch_in_epoch // self.world:]
        a = self.cfg.train.accumulate
        return [mine[i:i + a] for i in range(0, len(mine), a)]

    def _run_epoch(self) -> bool:
        """The rest of the current epoch, then validation; True when training should stop."""
        p, t = self.progress, self.cfg.train
        batches = self.plan.epoch(p.epoch)
        self._epoch_batches = distributed.usable(len(batches), self.world)  # all ranks together
        if p.batch_in_epoch == 0:
            log.info("epoch %d: %d batches, %.1f%% padding", p.epoch, len(batches),
                     100 * padding_fraction(self.plan.examples, batches))
        groups = self.step_groups(batches)
        bar = tqdm(total=p.batch_in_epoch + self.world * sum(map(len, groups)), initial=p.batch_in_epoch,
                   desc=f"epoch {p.epoch}", unit="batch", dynamic_ncols=True, leave=False, mininterval=1.0,
                   disable=None if distributed.is_main() else True)  # no bar unless rank 0 on a terminal
        window_tokens, window_start = 0, time.monotonic()
        for group in groups:
            self._schedule()
            step_start, tokens_before = time.monotonic(), p.tokens
            loss = self.train_step(*(self.plan.batch(positions) for positions in group))
            p.train_s += time.monotonic() - step_start
            p.step, p.batch_in_epoch = p.step + 1, p.batch_in_epoch + self.world * len(group)
            window_tokens += p.tokens - tokens_before
            rate = window_tokens / max(1e-9, time.monotonic() - window_start)
            bar.update(self.world * len(group))
            bar.set_postfix(loss=f"{loss:.3f}" if loss is not None else "skip", tok_s=f"{rate:.0f}",
                            lr=f"{self.optimizer.param_groups[0]['lr']:.1e}", refresh=False)
            if p.step % t.log_every_steps == 0:
                self._log_train(loss, rate)
                window_tokens, window_start = 0, time.monotonic()
            if self._after_step():
                bar.close()
                return True
        bar.close()
        return self._validate_round()

    def _after_step(self) -> bool:
        """Periodic validation / saving inside the epoch, and the step and time limits."""
        p, t = self.progress, self.cfg.train
        reason = self.limit_reached()
        if reason:
            log.info("%s: validating and saving", reason)
            self._validate_round()
            return True
        if t.valid_every_steps and p.step % t.valid_every_steps == 0:
            if self._validate_round():
                return True
            self.save("last.pt")
        elif t.save_every_steps and p.step % t.save_every_steps == 0:
            self.save("last.pt")
        return False

    def _validate_round(self) -> bool:
        """Validate (once per step); True when early stopping triggers."""
        if not self.progress.history or self.progress.history[-1]["step"] != self.progress.step:
            self.validate()
        if self.progress.bad_validations >= self.cfg.train.patience:
            log.info("early stopping: no BLEU gain in %d validations", self.progress.bad_validations)
            return True
        return False

    def _log_train(self, loss: float | None, tokens_per_s: float) -> None:
        p = self.progress
        self.log.train(p.step, loss, self.optimizer.param_groups[0]["lr"], tokens_per_s)
        log.info("step %d epoch %d: loss %s, %.0f target tokens/s, lr %.2g", p.step, p.epoch,
                 "skipped" if loss is None else f"{loss:.4f}", tokens_per_s, self.optimizer.param_groups[0]["lr"])
