"""The training loop: epochs, validation, early stopping, learning-rate schedule, checkpoints, resume."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from seq2seq.checkpoint import load_checkpoint, save_checkpoint, tokenizer_payload
from seq2seq.config import Config, to_dict
from seq2seq.data import Batch, BatchPlan, Corpus, collate, make_batches, padding_fraction
from seq2seq.errors import ConfigError, Seq2SeqError
from seq2seq.evaluate import score, translate_ids
from seq2seq.model import Seq2Seq
from seq2seq.tokenizer import PAD

log = logging.getLogger(__name__)


class TrainingStopped(Seq2SeqError):
    """Training cannot go on (for example, repeated non-finite losses); last.pt is intact."""


@dataclass
class Progress:
    """Where the run is; saved in every checkpoint so a resumed run continues exactly."""

    step: int = 0
    epoch: int = 1
    batch_in_epoch: int = 0  # batches of the current epoch already trained on
    best_bleu: float = -1.0
    bad_validations: int = 0  # since the best BLEU, for early stopping
    bad_steps: int = 0  # non-finite losses in a row
    skipped_steps: int = 0
    tokens: int = 0  # target tokens trained on
    train_s: float = 0.0  # seconds spent in training steps (validation excluded)
    elapsed_s: float = 0.0  # training wall time before this process
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def token_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Summed cross-entropy over non-PAD positions. logits (B, T, V), target (B, T)."""
    return F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=PAD,
                           label_smoothing=label_smoothing, reduction="sum")


def check_resumable(payload: dict[str, Any], cfg: Config, path: Path) -> None:
    """``cfg`` may resume the checkpoint only with the same language pair and model, and if it is unfinished."""
    pair = [cfg.data.src_lang, cfg.data.tgt_lang]
    if payload.get("pair") != pair:
        raise ConfigError(f"{path} was trained on {'-'.join(payload.get('pair') or ['?'])}, not on the requested "
                          f"{'-'.join(pair)}; resume with the same data.src_lang / data.tgt_lang")
    if payload["config"]["model"] != to_dict(cfg.model):
        raise ConfigError(f"{path} was trained with a different model config; resume with the same model settings")
    if payload["progress"]["finished"]:
        raise ConfigError(f"{path} belongs to a finished run; there is nothing to resume: start a new run "
                          "in a new hydra.run.dir")


class Trainer:
    def __init__(self, cfg: Config, corpus: Corpus, run_dir: Path) -> None:
        self.cfg, self.corpus, self.run_dir = cfg, corpus, Path(run_dir)
        seed_everything(cfg.seed)
        tok = corpus.tokenizer
        self.model = Seq2Seq(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size)
        o = cfg.optim
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2),
                                          weight_decay=o.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=o.lr_decay, patience=o.lr_patience, min_lr=o.min_lr)
        self.plan = BatchPlan(corpus.train, cfg.train.batch_tokens, cfg.train.batch_sentences, cfg.seed)
        self.progress = Progress()
        self._start = time.monotonic()

    # ---- checkpoints -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        self.progress.elapsed_s = self.elapsed()
        return {
            "config": to_dict(self.cfg),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "progress": to_dict(self.progress),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
            "tokenizer": tokenizer_payload(self.corpus.tokenizer),
            "pair": [self.cfg.data.src_lang, self.cfg.data.tgt_lang],
        }

    def save(self, name: str) -> None:
        save_checkpoint(self.run_dir / name, self.state())

    def resume(self, path: Path) -> None:
        payload = load_checkpoint(path)
        check_resumable(payload, self.cfg, path)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.progress = Progress(**payload["progress"])
        torch.set_rng_state(payload["rng"]["torch"])
        python_state = payload["rng"]["python"]
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
        self._rewrite_metrics()
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.progress.step,
                 self.progress.epoch, self.progress.batch_in_epoch)

    def _rewrite_metrics(self) -> None:
        """Validations the killed process logged after its last save are dropped: they will run again."""
        lines = "".join(json.dumps(r) + "\n" for r in self.progress.history)
        (self.run_dir / "metrics.jsonl").write_text(lines, encoding="utf-8")

    def elapsed(self) -> float:
        return self.progress.elapsed_s + time.monotonic() - self._start

    # ---- one step ----------------------------------------------------------------------------

    def train_step(self, batch: Batch) -> float | None:
        """Forward, backward, clip, update; returns the loss per target token, or None if skipped."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        try:
            logits, _ = self.model(batch.src, batch.src_lens, batch.tgt_in)  # (B, T, V)
            loss = token_loss(logits, batch.tgt_out, self.cfg.optim.label_smoothing) / batch.n_tgt_tokens
            finite = bool(torch.isfinite(loss))
            if finite:
                loss.backward()
        except torch.OutOfMemoryError:
            raise TrainingStopped(
                f"out of memory on a batch of {batch.src.size(0)} sentences ({batch.src.numel()} source and "
                f"{batch.tgt_in.numel()} target positions); lower train.batch_tokens (now "
                f"{self.cfg.train.batch_tokens}) and resume=true") from None
        if finite:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_norm or math.inf)
            if torch.isfinite(norm):
                self.optimizer.step()
                self.progress.bad_steps = 0
                return float(loss.detach())
        return self._skip_step(batch, float(loss.detach()))

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

    @torch.inference_mode()
    def validation_loss(self) -> float:
        self.model.eval()
        total, tokens = 0.0, 0
        examples = self.corpus.valid
        for positions in make_batches(examples, self.cfg.train.valid_batch_tokens):
            batch = collate([examples[i] for i in positions])
            logits, _ = self.model(batch.src, batch.src_lens, batch.tgt_in)
            total += float(token_loss(logits, batch.tgt_out, 0.0))
            tokens += batch.n_tgt_tokens
        return total / max(1, tokens)

    def validate(self) -> dict[str, Any]:
        """Loss, perplexity, and greedy BLEU / chrF on detokenized text; updates schedule and best.pt."""
        loss = self.validation_loss()
        sources = [e.src for e in self.corpus.valid]
        results = translate_ids(self.model, sources, self.cfg.decode, greedy=True)
        hyps = self.corpus.tokenizer.decode_tgt([r.tokens[0][0] for r in results])
        scores = score(hyps, self.corpus.valid_refs)
        p = self.progress
        record = {"kind": "valid", "step": p.step, "epoch": p.epoch, "loss": round(loss, 6),
                  "ppl": round(math.exp(min(loss, 50)), 4), "bleu": round(scores.bleu, 4),
                  "chrf": round(scores.chrf, 4), "lr": self.optimizer.param_groups[0]["lr"]}
        self.scheduler.step(scores.bleu)
        improved = scores.bleu > p.best_bleu
        if improved:
            p.best_bleu, p.bad_validations = scores.bleu, 0
        else:
            p.bad_validations += 1
        record["best"] = improved
        p.history.append(record)
        self._write_metrics(record)
        log.info("validation step %d epoch %d: loss %.3f ppl %.2f BLEU %.2f chrF %.2f lr %.2g%s", p.step, p.epoch,
                 loss, record["ppl"], scores.bleu, scores.chrf, record["lr"], " (best)" if improved else "")
        if improved:
            self.save("best.pt")
        return record

    def _write_metrics(self, record: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        elapsed = self.elapsed()
        timing = {"step": record["step"], "epoch": record["epoch"], "elapsed_s": round(elapsed, 1),
                  "tokens_per_s": round(self.progress.tokens / max(self.progress.train_s, 1e-9), 1),
                  "bleu": record["bleu"]}
        with open(self.run_dir / "timing.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(timing) + "\n")

    # ---- the loop ----------------------------------------------------------------------------

    def limit_reached(self) -> str | None:
        t, p = self.cfg.train, self.progress
        if t.max_steps is not None and p.step >= t.max_steps:
            return f"train.max_steps={t.max_steps} reached"
        if t.max_minutes is not None and self.elapsed() >= 60 * t.max_minutes:
            return f"train.max_minutes={t.max_minutes} reached"
        return None

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
        log.info("finished at step %d: best validation BLEU %.2f (best.pt)", p.step, p.best_bleu)
        return p

    def _run_epoch(self) -> bool:
        """The rest of the current epoch, then validation; True when training should stop."""
        p, t = self.progress, self.cfg.train
        batches = self.plan.epoch(p.epoch)
        if p.batch_in_epoch == 0:
            log.info("epoch %d: %d batches, %.1f%% padding", p.epoch, len(batches),
                     100 * padding_fraction(self.plan.examples, batches))
        bar = tqdm(total=len(batches), initial=p.batch_in_epoch, desc=f"epoch {p.epoch}", unit="batch",
                   dynamic_ncols=True, leave=False, disable=None, mininterval=1.0)  # no bar unless a terminal
        window_tokens, window_start = 0, time.monotonic()
        for positions in batches[p.batch_in_epoch:]:
            step_start = time.monotonic()
            batch = self.plan.batch(positions)
            loss = self.train_step(batch)
            p.train_s += time.monotonic() - step_start
            p.step, p.batch_in_epoch = p.step + 1, p.batch_in_epoch + 1
            p.tokens += batch.n_tgt_tokens
            window_tokens += batch.n_tgt_tokens
            rate = window_tokens / max(1e-9, time.monotonic() - window_start)
            bar.update(1)
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
        if self.limit_reached():
            log.info("%s: validating and saving", self.limit_reached())
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
        log.info("step %d epoch %d: loss %s, %.0f target tokens/s, lr %.2g", p.step, p.epoch,
                 "skipped" if loss is None else f"{loss:.4f}", tokens_per_s, self.optimizer.param_groups[0]["lr"])
