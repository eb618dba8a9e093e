"""A training run's checkpoints: what goes into one, and how a run continues from one (resume, a finished run
with a larger budget, or a new run from another run's weights)."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from seq2seq.checkpoint import (
    KEPT_PREFIX,
    Identity,
    check_compatible,
    checkpoint_config,
    decoding_payload,
    differences,
    kept_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from seq2seq.config import Config, to_dict
from seq2seq.errors import ConfigError
from seq2seq.training import distributed
from seq2seq.training.progress import Clock, Progress, seed_everything, spent_budgets

if TYPE_CHECKING:
    from seq2seq.data.tokenizer import Tokenizer
    from seq2seq.training.step import Parts

log = logging.getLogger(__name__)


class RunCheckpoints:
    """A training run's checkpoints: what goes into one, and how a run continues from one.

    Only rank 0 writes; every rank reads the same file when resuming (rank 0's RNG state; the other
    ranks re-seed from it).
    """

    def __init__(self, run_dir: Path, cfg: Config, parts: Parts, tokenizer: Tokenizer, clock: Clock) -> None:
        self.run_dir, self.cfg, self.parts, self.tokenizer, self.clock = run_dir, cfg, parts, tokenizer, clock
        self.device = clock.device

    def rng(self) -> dict[str, Any]:
        """This process's random state: dropout masks and anything else drawn during training."""
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    def state(self, progress: Progress, rng_ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A checkpoint's payload; ``rng_ranks``: every process's random state (under torchrun)."""
        parts = self.parts
        return {
            "config": to_dict(self.cfg),
            "model": parts.model.state_dict(),
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(),
            "progress": to_dict(progress) | {"elapsed_s": self.clock.elapsed()},  # wall time so far
            "rng": self.rng(),  # rank 0's
            "tokenizer": self.tokenizer.stored(),
            "pair": [self.cfg.data.src_lang, self.cfg.data.tgt_lang],
        } | ({"scaler": parts.scaler.state_dict()} if parts.scaler is not None else {}) | (
            {"rng_ranks": rng_ranks} if rng_ranks else {})

    def save(self, name: str, progress: Progress, every_rank: bool = True) -> None:
        """Rank 0 writes ``run_dir/name``; the other ranks hold the same weights and progress, and send their
        random state for it (a collective: every rank calls this at the same step). ``every_rank=False``
        (an interrupt, where the ranks may be anywhere) saves rank 0's alone."""
        ranks = distributed.gather_object(self.rng()) if every_rank and distributed.world_size() > 1 else None
        if distributed.is_main():
            save_checkpoint(self.run_dir / name, self.state(progress, ranks))

    def keep(self, progress: Progress, count: int) -> None:
        """Write ``ckpt.step{N}.pt`` (weights only: no optimizer, RNG) and delete all but the newest ``count``."""
        if not distributed.is_main():
            return
        save_checkpoint(self.run_dir / f"{KEPT_PREFIX}{progress.step}.pt", decoding_payload(self.state(progress)))
        for old in kept_checkpoints(self.run_dir)[:-count]:
            old.unlink(missing_ok=True)

    def resume(self, path: Path) -> Progress:
        """Load ``path`` into the run's parts and RNGs; returns where the run was."""
        payload = load_checkpoint(path)
        continued = check_resumable(payload, self.cfg, path, self.tokenizer)
        parts = self.parts
        parts.model.load_state_dict(payload["model"])
        parts.optimizer.load_state_dict(payload["optimizer"])
        for group in parts.optimizer.param_groups:  # checkpoints from before fused Adam stay fast
            group["fused"], group["foreach"] = True, None
        parts.scheduler.load_state_dict(payload["scheduler"])
        if parts.scaler is not None and "scaler" in payload:
            parts.scaler.load_state_dict(payload["scaler"])
        progress = Progress(**payload["progress"])
        if continued:
            log.info("%s", continued)
            progress.finished, progress.stopped = False, None
        self.clock.restart(progress.elapsed_s)
        self._restore_rng(payload, path, progress)
        self._repair_best(progress)
        return progress

    def init_from(self, path: Path, reset: str) -> None:
        """A new run starting from the weights of ``path`` (same model and vocabulary); ``reset=optimizer``
        starts Adam afresh, ``reset=none`` keeps its moments (the rates are this run's)."""
        payload = load_checkpoint(path)
        check_compatible(path, Identity.of(payload, path), Identity.of_run(self.cfg, self.tokenizer), "this run",
                         "init_from needs a checkpoint of the same data.src_lang / data.tgt_lang, model settings "
                         "and SentencePiece model(s) (the data.* settings it was trained with)")
        self.parts.model.load_state_dict(payload["model"])
        if reset == "none":
            optimizer = self.parts.optimizer
            fresh = [dict(group) for group in optimizer.param_groups]
            optimizer.load_state_dict(payload["optimizer"])
            for group, settings in zip(optimizer.param_groups, fresh, strict=True):
                group.update({k: v for k, v in settings.items() if k != "params"})
        log.info("new run from the weights of %s (step %d of its run); optimizer: %s", path,
                 payload["progress"]["step"], "fresh" if reset == "optimizer" else "kept (init_reset=none)")

    def _restore_rng(self, payload: dict[str, Any], path: Path, progress: Progress) -> None:
        """Every process continues its own random stream where the checkpoint left it."""
        rank, ranks = distributed.rank(), payload.get("rng_ranks")
        exact = ranks is not None and len(ranks) == distributed.world_size()
        rng = ranks[rank] if exact else payload["rng"]
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and "cuda" in rng:  # GPU dropout masks continue too
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        elif self.device.type == "cuda":
            log.info("%s was written on the CPU: GPU dropout masks start afresh (not an exact resume)", path)
        python_state = rng["python"]
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
        if rank and not exact:  # saved by an interrupt or by another number of processes
            log.warning("%s holds no random state for process %d: it starts a new one (its dropout masks differ "
                        "from an uninterrupted run's)", path, rank)
            seed_everything(self.cfg.seed + 1000 * progress.step + rank)

    def _repair_best(self, progress: Progress) -> None:
        """An interrupt while best.pt was written leaves the old best.pt, while last.pt (saved by the interrupt,
        at the same step) records the new best: write best.pt from these weights, which are that model."""
        best = [r["step"] for r in progress.history if r.get("best")]
        path = self.run_dir / "best.pt"
        if not best or best[-1] != progress.step or not distributed.is_main():
            return
        if path.exists() and load_checkpoint(path)["progress"]["step"] == progress.step:
            return
        log.warning("best.pt does not hold the best validation (step %d; its write was interrupted): writing it "
                    "from %s", progress.step, self.run_dir / "last.pt")
        save_checkpoint(path, self.state(progress))


def _check_finished(payload: dict[str, Any], cfg: Config, path: Path) -> str:
    """A finished run continues when its budget grew; returns the log line saying what changed."""
    p, saved_train, now = payload["progress"], payload["config"]["train"], to_dict(cfg.train)
    blocked = spent_budgets(cfg.train, Progress(**p), p["elapsed_s"], finished=True)
    if blocked:
        raise ConfigError(
            f"{path} belongs to a finished run and {'; '.join(blocked)} is already reached: to train it longer, "
            "resume=true with a larger value of that setting; to start a new run from its weights, "
            f"init_from={path} in a new hydra.run.dir")
    budget = ("max_steps", "max_epochs", "max_minutes", "patience")
    changed = differences({k: saved_train[k] for k in budget}, {k: now[k] for k in budget}, "train")
    return (f"continuing the finished run {path} from step {p['step']} (it stopped at "
            f"{p.get('stopped') or 'its budget'}): {', '.join(changed) or 'the budget is unchanged'}"
            + ("; the cosine schedule now spans the new budget" if cfg.optim.schedule == "cosine" else ""))


def check_resumable(payload: dict[str, Any], cfg: Config, path: Path, tokenizer: Tokenizer) -> str | None:
    """``cfg`` may resume the checkpoint only with the same language pair, model and vocabulary; a finished
    run only with a budget that lets it go on. Returns what a continued finished run should log, else None."""
    if "optimizer" not in payload:
        raise ConfigError(f"{path} holds weights only (a kept or averaged checkpoint) and cannot be resumed; "
                          "resume from the run's last.pt")
    check_compatible(path, Identity.of(payload, path), Identity.of_run(cfg, tokenizer), "this run",
                     "resume with the settings it was trained with (data.src_lang / data.tgt_lang, model.*, and the "
                     "data.* settings of its vocabulary)")
    saved = to_dict(checkpoint_config(payload, path))
    for group in ("optim", "train"):  # allowed (a longer budget, say), but the schedule changes with them
        changed = differences(saved[group], to_dict(getattr(cfg, group)), group)
        if changed:
            log.warning("resuming %s with other settings than it was trained with: %s", path, ", ".join(changed))
    return _check_finished(payload, cfg, path) if payload["progress"]["finished"] else None
