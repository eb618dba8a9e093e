"""Self-describing checkpoints: atomic save, safe (``weights_only=True``) load, clear errors.

A checkpoint holds the weights, the optimizer and scheduler state, the trainer's position, RNG states,
the config as plain data and the SentencePiece model(s): enough to evaluate, translate or resume with
nothing else on disk.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from seq2seq.config import Config, to_dataclass
from seq2seq.errors import CheckpointError, Seq2SeqError
from seq2seq.model import Seq2Seq
from seq2seq.tokenizer import Tokenizer

FORMAT = "seq2seq-checkpoint"
VERSION = 1


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
    tok = payload["tokenizer"]
    return Tokenizer(bytes(tok["src"]), None if tok["tgt"] is None else bytes(tok["tgt"]))


def tokenizer_payload(tokenizer: Tokenizer) -> dict[str, bytes | None]:
    return {"src": tokenizer.src_model, "tgt": tokenizer.tgt_model}


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
