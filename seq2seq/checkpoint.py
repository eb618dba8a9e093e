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

from seq2seq.config import Config, to_dataclass, to_dict
from seq2seq.errors import CheckpointError, ConfigError, Seq2SeqError
from seq2seq.nn.model import Seq2Seq
from seq2seq.training import distributed
from seq2seq.training.progress import Clock, Progress, seed_everything

if TYPE_CHECKING:
    from seq2seq.data.tokenizer import Tokenizer
    from seq2seq.training.step import Parts

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
        first = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else ""
        if isinstance(err, (KeyError, IndexError)) or first.isdigit():  # e.g. KeyError(101): says nothing
            first = "no zip archive or pickle inside"
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
    from seq2seq.data.tokenizer import Tokenizer

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
        continued = check_resumable(payload, self.cfg, path)
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
        self._restore_rng(payload["rng"], path, progress)
        return progress

    def init_from(self, path: Path, reset: str) -> None:
        """A new run starting from the weights of ``path`` (same model and vocabulary); ``reset=optimizer``
        starts Adam afresh, ``reset=none`` keeps its moments (the rates are this run's)."""
        payload = load_checkpoint(path)
        _check_model(payload, self.cfg, path, "init_from needs a model")
        check_vocabulary(payload, self.tokenizer, path)
        self.parts.model.load_state_dict(payload["model"])
        if reset == "none":
            optimizer = self.parts.optimizer
            fresh = [dict(group) for group in optimizer.param_groups]
            optimizer.load_state_dict(payload["optimizer"])
            for group, settings in zip(optimizer.param_groups, fresh, strict=True):
                group.update({k: v for k, v in settings.items() if k != "params"})
        log.info("new run from the weights of %s (step %d of its run); optimizer: %s", path,
                 payload["progress"]["step"], "fresh" if reset == "optimizer" else "kept (init_reset=none)")

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


def differences(saved: dict[str, Any], now: dict[str, Any], group: str) -> list[str]:
    """``group.key=old -> new`` for every setting of ``group`` that differs (plain data on both sides)."""
    keys = sorted(set(saved) | set(now))
    return [f"{group}.{k}={saved.get(k, '(unset)')} -> {now.get(k, '(unset)')}" for k in keys
            if saved.get(k, "(unset)") != now.get(k, "(unset)")]


def _check_model(payload: dict[str, Any], cfg: Config, path: Path, action: str) -> None:
    saved = to_dict(checkpoint_config(payload, path).model)  # the schema fills keys newer than the checkpoint
    changed = differences(saved, to_dict(cfg.model), "model")
    if changed:
        raise ConfigError(f"{path} was trained with other model settings ({', '.join(changed)}, checkpoint -> "
                          f"now); {action} with the checkpoint's model settings")


def _room_left(t: dict[str, Any], p: dict[str, Any]) -> list[str]:
    """The limits of the train settings ``t`` that progress ``p`` has already reached (plain data)."""
    hit = []
    if t["max_steps"] is not None and p["step"] >= t["max_steps"]:
        hit.append(f"train.max_steps={t['max_steps']} (step {p['step']})")
    if t["max_minutes"] is not None and p["elapsed_s"] >= 60 * t["max_minutes"]:
        hit.append(f"train.max_minutes={t['max_minutes']} ({p['elapsed_s'] / 60:.1f} minutes)")
    if p["epoch"] > t["max_epochs"] or (p["epoch"] == t["max_epochs"] and p.get("stopped") in ("train.max_epochs",
                                                                                               None)):
        hit.append(f"train.max_epochs={t['max_epochs']} (epoch {p['epoch']})")
    if p["bad_validations"] >= t["patience"]:
        hit.append(f"train.patience={t['patience']} ({p['bad_validations']} validations without a gain)")
    return hit


def _check_finished(payload: dict[str, Any], cfg: Config, path: Path) -> str:
    """A finished run continues when its budget grew; returns the log line saying what changed."""
    p, saved_train, now = payload["progress"], payload["config"]["train"], to_dict(cfg.train)
    blocked = _room_left(now, p)
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


def check_resumable(payload: dict[str, Any], cfg: Config, path: Path) -> str | None:
    """``cfg`` may resume the checkpoint only with the same language pair and model; a finished run only with
    a budget that lets it go on. Returns what a continued finished run should log, else None."""
    pair = [cfg.data.src_lang, cfg.data.tgt_lang]
    if "optimizer" not in payload:
        raise ConfigError(f"{path} holds weights only (a kept or averaged checkpoint) and cannot be resumed; "
                          "resume from the run's last.pt")
    if payload.get("pair") != pair:
        raise ConfigError(f"{path} was trained on {'-'.join(payload.get('pair') or ['?'])}, not on the requested "
                          f"{'-'.join(pair)}; resume with the same data.src_lang / data.tgt_lang")
    _check_model(payload, cfg, path, "resume")
    saved = to_dict(checkpoint_config(payload, path))
    for group in ("optim", "train"):  # allowed (a longer budget, say), but the schedule changes with them
        changed = differences(saved[group], to_dict(getattr(cfg, group)), group)
        if changed:
            log.warning("resuming %s with other settings than it was trained with: %s", path, ", ".join(changed))
    return _check_finished(payload, cfg, path) if payload["progress"]["finished"] else None


def check_vocabulary(payload: dict[str, Any], tokenizer: Tokenizer, path: Path) -> None:
    """The checkpoint's SentencePiece model(s) must be this run's: the weights are indexed by its pieces."""
    theirs = tokenizer_from(payload)
    for side, mine, other in (("source", tokenizer.src_model, theirs.src_model),
                              ("target", tokenizer.target_model, theirs.target_model)):
        if bytes(mine) == bytes(other):
            continue
        size_mine = tokenizer.src_vocab_size if side == "source" else tokenizer.tgt_vocab_size
        size_other = theirs.src_vocab_size if side == "source" else theirs.tgt_vocab_size
        detail = (f"{size_other} pieces in the checkpoint, {size_mine} in this run" if size_mine != size_other
                  else "as many pieces, but other ones")
        raise ConfigError(f"{path} has another {side} vocabulary than this run ({detail}); use the data.* "
                          "settings (corpus, data.vocab_size, data.joint_vocab, data.spm_type) it was trained with")


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
