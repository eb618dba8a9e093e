"""The checkpoint layout, with one owner: atomic save, safe (``weights_only=True``) load, clear errors.

A checkpoint holds the weights, the optimizer and scheduler state, the trainer's position, RNG states,
the config as plain data and the SentencePiece model(s): enough to evaluate, translate or resume with
nothing else on disk. :class:`RunCheckpoints` writes a training run's checkpoints and reads them back
into a run; :func:`load_model` reads one for decoding.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from seq2seq import distributed
from seq2seq.config import Config, to_dataclass, to_dict
from seq2seq.errors import CheckpointError, ConfigError, Seq2SeqError
from seq2seq.model import Seq2Seq
from seq2seq.progress import Clock, Progress, seed_everything

if TYPE_CHECKING:
    from seq2seq.step import Parts
    from seq2seq.tokenizer import Tokenizer

log = logging.getLogger(__name__)

FORMAT = "seq2seq-checkpoint"
VERSION = 1
KEPT_PREFIX = "ckpt.step"  # train.keep_checkpoints: ckpt.step{N}.pt, weights only
DECODING_KEYS = ("config", "model", "progress", "tokenizer", "pair")  # what decoding (and averaging) needs


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file in the same directory, flush it to disk, then rename over ``path``.

    A kill at any moment leaves either the old file or the new one, never a truncated one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write checkpoint {path}: {err}; free some disk space or choose "
                              "another hydra.run.dir (the previous checkpoint is untouched)") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with ``weights_only=True``: only tensors and plain data, never code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; pass the path of a best.pt or last.pt from a run directory")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); use another checkpoint, e.g. best.pt")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for damaged files; all mean the same to a user
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if isinstance(err, pickle.UnpicklingError) and "global" in str(err).lower():
            raise CheckpointError(f"refusing to load {path}: it holds objects other than tensors and plain data "
                                  f"({first[:200]}); only load checkpoints written by seq2seq") from None
        raise CheckpointError(f"cannot read checkpoint {path}: it is truncated or not a PyTorch file "
                              f"({first[:160]}); use another checkpoint, e.g. best.pt") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a seq2seq checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload.get('version')}; this seq2seq reads {VERSION}")
    return payload


def checkpoint_config(payload: dict[str, Any], path: str | Path = "checkpoint") -> Config:
    """The config inside a checkpoint, validated against the schema before use."""
    try:
        return to_dataclass(payload["config"], Config)
    except (KeyError, Seq2SeqError) as err:
        raise CheckpointError(f"{path}: the config inside is invalid ({err})") from None


def tokenizer_from(payload: dict[str, Any]) -> Tokenizer:
    from seq2seq.tokenizer import Tokenizer

    tok = payload["tokenizer"]
    return Tokenizer(bytes(tok["src"]), None if tok["tgt"] is None else bytes(tok["tgt"]))


def load_model(path: str | Path) -> tuple[Seq2Seq, Tokenizer, Config]:
    """Model (in eval mode), tokenizer and config from a checkpoint alone."""
    payload = load_checkpoint(path)
    cfg = checkpoint_config(payload, path)
    tokenizer = tokenizer_from(payload)
    model = Seq2Seq(cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    try:
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path}: weights do not match the config inside ({str(err).splitlines()[0]})") from None
    return model.eval(), tokenizer, cfg


class RunCheckpoints:
    """A training run's checkpoints: what goes into one, and how a run continues from one.

    Only rank 0 writes; every rank reads the same file when resuming (rank 0's RNG state; the other
    ranks re-seed from it).
    """

    def __init__(self, run_dir: Path, cfg: Config, parts: Parts, tokenizer: Tokenizer, clock: Clock) -> None:
        self.run_dir, self.cfg, self.parts, self.tokenizer, self.clock = run_dir, cfg, parts, tokenizer, clock
        self.device = clock.device

    def state(self, progress: Progress) -> dict[str, Any]:
        parts = self.parts
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "config": to_dict(self.cfg),
            "model": parts.model.state_dict(),
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(),
            "progress": to_dict(progress) | {"elapsed_s": self.clock.elapsed()},  # wall time so far
            "rng": rng,
            "tokenizer": {"src": self.tokenizer.src_model, "tgt": self.tokenizer.tgt_model},
            "pair": [self.cfg.data.src_lang, self.cfg.data.tgt_lang],
        } | ({"scaler": parts.scaler.state_dict()} if parts.scaler is not None else {})

    def save(self, name: str, progress: Progress) -> None:
        """Rank 0 writes ``run_dir/name``; the other ranks hold the same weights and progress."""
        if distributed.is_main():
            save_checkpoint(self.run_dir / name, self.state(progress))

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
        check_resumable(payload, self.cfg, path)
        parts = self.parts
        parts.model.load_state_dict(payload["model"])
        parts.optimizer.load_state_dict(payload["optimizer"])
        for group in parts.optimizer.param_groups:  # checkpoints from before fused Adam stay fast
            group["fused"], group["foreach"] = True, None
        parts.scheduler.load_state_dict(payload["scheduler"])
        if parts.scaler is not None and "scaler" in payload:
            parts.scaler.load_state_dict(payload["scaler"])
        progress = Progress(**payload["progress"])
        self.clock.restart(progress.elapsed_s)
        self._restore_rng(payload["rng"], path, progress)
        return progress

    def _restore_rng(self, rng: dict[str, Any], path: Path, progress: Progress) -> None:
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and "cuda" in rng:  # GPU dropout masks continue too
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        elif self.device.type == "cuda":
            log.info("%s was written on the CPU: GPU dropout masks start afresh (not an exact resume)", path)
        python_state = rng["python"]
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
        if distributed.rank():
            seed_everything(self.cfg.seed + 1000 * progress.step + distributed.rank())


def check_resumable(payload: dict[str, Any], cfg: Config, path: Path) -> None:
    """``cfg`` may resume the checkpoint only with the same language pair and model, and if it is unfinished."""
    pair = [cfg.data.src_lang, cfg.data.tgt_lang]
    if "optimizer" not in payload:
        raise ConfigError(f"{path} holds weights only (a kept or averaged checkpoint) and cannot be resumed; "
                          "resume from the run's last.pt")
    if payload.get("pair") != pair:
        raise ConfigError(f"{path} was trained on {'-'.join(payload.get('pair') or ['?'])}, not on the requested "
                          f"{'-'.join(pair)}; resume with the same data.src_lang / data.tgt_lang")
    if to_dict(checkpoint_config(payload, path).model) != to_dict(cfg.model):  # the schema fills newer keys
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


def decoding_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The part of a checkpoint that decoding needs: weights, config, tokenizer, language pair, progress."""
    return {key: payload[key] for key in DECODING_KEYS if key in payload}


def kept_checkpoints(run_dir: str | Path) -> list[Path]:
    """A run's kept validation checkpoints (``ckpt.step{N}.pt``), oldest step first."""
    found = []
    for path in Path(run_dir).glob(f"{KEPT_PREFIX}*.pt"):
        step = path.name[len(KEPT_PREFIX):-len(".pt")]
        if step.isdigit():
            found.append((int(step), path))
    return [path for _, path in sorted(found)]
