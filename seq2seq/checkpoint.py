"""The checkpoint layout, with one owner: atomic save, safe (``weights_only=True``) load, clear errors.

A checkpoint holds the weights, the optimizer and scheduler state, the trainer's position, RNG states,
the config as plain data and the SentencePiece model(s): enough to evaluate, translate or resume with
nothing else on disk. :func:`load_model` reads one for decoding; :func:`check_compatible` is the one check that
two checkpoints (or a checkpoint and a run) fit together. A training run's checkpoints are written and resumed
by seq2seq/training/run_checkpoints.py.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from seq2seq.config import Config, to_dataclass, to_dict
from seq2seq.errors import CheckpointError, Seq2SeqError
from seq2seq.files import atomic_write
from seq2seq.nn.model import Seq2Seq

if TYPE_CHECKING:
    from seq2seq.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)

FORMAT = "seq2seq-checkpoint"
VERSION = 1
KEPT_PREFIX = "ckpt.step"  # train.keep_checkpoints: ckpt.step{N}.pt, weights only
DECODING_KEYS = ("config", "model", "progress", "tokenizer", "pair")  # what decoding (and averaging) needs


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write atomically (seq2seq/files.py): a kill at any moment leaves either the old file or the new one."""
    try:
        atomic_write(path, lambda f: torch.save({"format": FORMAT, "version": VERSION, **payload}, f))
    except OSError as err:
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


def upgraded(config: dict[str, Any]) -> dict[str, Any]:
    """A stored config in today's terms. Until optim.warmup_steps warmed up the cosine too (commit a7aa347) its
    default was noam's 4000, stored in every checkpoint and read by noam alone: outside noam it meant no warm-up,
    so it becomes 0 there. (A cosine run that asked for exactly 4000 since is read back as 0 too; that view only
    feeds what a resume compares, as training follows the command line's settings.)"""
    optim = config.get("optim")
    if isinstance(optim, dict) and optim.get("schedule") != "noam" and optim.get("warmup_steps") == 4000:
        config = {**config, "optim": {**optim, "warmup_steps": 0}}
    return config


def checkpoint_config(payload: dict[str, Any], path: str | Path = "checkpoint") -> Config:
    """The config inside a checkpoint (``upgraded``), validated against the schema before use."""
    try:
        return to_dataclass(upgraded(payload["config"]), Config)
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


def differences(saved: dict[str, Any], now: dict[str, Any], group: str) -> list[str]:
    """``group.key=old -> new`` for every setting of ``group`` that differs (plain data on both sides)."""
    keys = sorted(set(saved) | set(now))
    return [f"{group}.{k}={saved.get(k, '(unset)')} -> {now.get(k, '(unset)')}" for k in keys
            if saved.get(k, "(unset)") != now.get(k, "(unset)")]


@dataclass(frozen=True)
class Identity:
    """What makes two checkpoints interchangeable: the language pair, the model settings (plain data, filled
    by the schema where a checkpoint is older than it) and the SentencePiece model(s) the weights index."""

    pair: tuple[str, str]
    model: dict[str, Any]
    src_model: bytes
    tgt_model: bytes  # the target side's model: the source's when the vocabulary is joint

    @staticmethod
    def of(payload: dict[str, Any], path: str | Path = "checkpoint") -> Identity:
        cfg, tok = checkpoint_config(payload, path), payload["tokenizer"]
        pair = tuple(payload.get("pair") or (cfg.data.src_lang, cfg.data.tgt_lang))
        src = bytes(tok["src"])
        return Identity(pair, to_dict(cfg.model), src, src if tok["tgt"] is None else bytes(tok["tgt"]))

    @staticmethod
    def of_run(cfg: Config, tokenizer: Tokenizer) -> Identity:
        return Identity((cfg.data.src_lang, cfg.data.tgt_lang), to_dict(cfg.model), tokenizer.src_model,
                        tokenizer.target_model)


def check_compatible(path: str | Path, found: Identity, wanted: Identity, wanted_name: str, fix: str,
                     same_model: bool = True) -> None:
    """The one check of checkpoint compatibility (resume, ``init_from``, ensembles, averaging): refuse
    ``found`` (the checkpoint at ``path``) unless it has ``wanted``'s language pair, SentencePiece model(s)
    and, with ``same_model``, model settings. One message form: what differs, then ``fix``."""
    problem = None
    if found.pair != wanted.pair:
        problem = f"it translates {'-'.join(found.pair)}, not {'-'.join(wanted.pair)}"
    elif same_model and found.model != wanted.model:
        changed = differences(found.model, wanted.model, "model")
        problem = f"its model settings differ ({', '.join(changed)}; checkpoint -> {wanted_name})"
    else:
        for side, mine, theirs in (("source", found.src_model, wanted.src_model),
                                   ("target", found.tgt_model, wanted.tgt_model)):
            if not same_vocabulary(mine, theirs):
                sizes = (_pieces(mine), _pieces(theirs))
                detail = (f"{sizes[0]} pieces there, {sizes[1]} in {wanted_name}"
                          if None not in sizes and sizes[0] != sizes[1] else "other pieces")
                problem = f"its {side} vocabulary (SentencePiece model) differs ({detail})"
                break
    if problem:
        raise CheckpointError(f"{path} does not fit {wanted_name}: {problem}; {fix}")


def same_vocabulary(a: bytes, b: bytes) -> bool:
    """Two SentencePiece models segment alike: the same pieces with the same scores and kinds, id for id. Their
    bytes may still differ, since a model also records how it was trained (the trainer's thread count, say)."""
    return bytes(a) == bytes(b) or (_vocabulary(bytes(a)) == _vocabulary(bytes(b)) is not None)


def _vocabulary(model: bytes) -> tuple | None:
    import sentencepiece as spm

    try:
        proc = spm.SentencePieceProcessor(model_proto=model)
    except (RuntimeError, TypeError):  # a damaged model
        return None
    return tuple((proc.id_to_piece(i), proc.get_score(i), proc.is_control(i), proc.is_unknown(i), proc.is_unused(i))
                 for i in range(proc.get_piece_size())) + (proc.normalize(" Ａ b  c"),)


def _pieces(model: bytes) -> int | None:
    import sentencepiece as spm

    try:
        return spm.SentencePieceProcessor(model_proto=bytes(model)).get_piece_size()
    except (RuntimeError, TypeError):  # a damaged model: its size is unknown
        return None


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
