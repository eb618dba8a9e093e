"""Checkpoint averaging: the element-wise mean of several checkpoints' weights, as one checkpoint.

Averaging the last few checkpoints of a run smooths the noise of the final updates and usually gives a
better model than any one of them for free (Junczys-Dowmunt et al. 2016; Vaswani et al. 2017, sec. 6.1).
The members must be the same network over the same vocabulary: the same ``model`` config, the same
SentencePiece model(s) and language pair. The result is a normal, self-contained checkpoint (weights,
config, tokenizer) that seq2seq-evaluate and seq2seq-translate load like best.pt; it holds no optimizer
state, so it cannot be resumed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from seq2seq.checkpoint import (
    Identity,
    check_compatible,
    decoding_payload,
    kept_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from seq2seq.config import Config
from seq2seq.data.corpus import Corpus
from seq2seq.errors import CheckpointError, ConfigError
from seq2seq.nn.model import Seq2Seq

log = logging.getLogger(__name__)


def resolve_checkpoints(checkpoints: Sequence[str], run_dir: str | None, last: int | None) -> list[Path]:
    """The files to average: ``checkpoints``, or else the newest ``last`` (all when None) kept checkpoints of
    the run directory ``run_dir``."""
    if checkpoints:
        return [Path(p) for p in checkpoints]
    if run_dir is None:
        raise ConfigError("nothing to average: name a run directory or checkpoint files")
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"no run directory {run}; pass the directory of a seq2seq-train run, or list "
                          "checkpoints=[a.pt,b.pt]")
    kept = kept_checkpoints(run)
    if not kept:
        raise ConfigError(f"{run} has no kept checkpoints (ckpt.step*.pt); train with train.keep_checkpoints=N, "
                          "or list the files to average with checkpoints=[a.pt,b.pt]")
    return kept[-last:] if last else kept


def average_checkpoints(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The checkpoint whose weights are the mean of ``paths``' weights (summed in float64, so the mean of
    identical weights is exactly those weights); config and tokenizer are the last one's. It records that it
    is an average, and of what (``averaged_from``); its progress is the last member's, without a best BLEU of
    its own (none was measured)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ConfigError("nothing to average: name at least one checkpoint")
    first = load_checkpoint(paths[0])
    total = {k: v.to(torch.float64) if v.is_floating_point() else v.clone() for k, v in first["model"].items()}
    last = first
    for path in paths[1:]:
        last = load_checkpoint(path)
        check_compatible(path, Identity.of(last, path), Identity.of(first, paths[0]), str(paths[0]),
                         "average checkpoints of one run, or of runs with the same model settings and "
                         "SentencePiece model(s)")
        _check_same_tensors(last["model"], path, first["model"], paths[0])
        for key, value in last["model"].items():
            if value.is_floating_point():
                total[key] += value.to(torch.float64)
    dtypes = {k: v.dtype for k, v in first["model"].items()}
    weights = {k: (v / len(paths)).to(dtypes[k]) if v.is_floating_point() else v for k, v in total.items()}
    progress = dict(last.get("progress") or {}) | {"best_bleu": None}
    return decoding_payload(last) | {"model": weights, "progress": progress,
                                     "averaged_from": [str(p) for p in paths]}


def _check_same_tensors(weights: dict[str, Any], path: Path, first: dict[str, Any], first_path: Path) -> None:
    """The same weight names with the same shapes, or a message naming the first one that differs."""
    for key in sorted(first.keys() | weights.keys()):
        if key not in weights or key not in first:
            where, other = (path, first_path) if key not in weights else (first_path, path)
            raise CheckpointError(f"cannot average {path} with {first_path}: {where} has no weight {key!r} that "
                                  f"{other} has; average checkpoints of one model")
        if weights[key].shape != first[key].shape:
            raise CheckpointError(f"cannot average {path} with {first_path}: weight {key!r} is "
                                  f"{tuple(weights[key].shape)} there and {tuple(first[key].shape)} in "
                                  f"{first_path}; average checkpoints of one model")


def write_average(paths: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Average ``paths`` into the checkpoint ``out`` (written atomically); returns its payload."""
    payload = average_checkpoints(paths)
    save_checkpoint(out, payload)
    log.info("averaged %d checkpoints (%s) into %s", len(paths), ", ".join(Path(p).name for p in paths), out)
    return payload


def average_at_end(model: Seq2Seq, corpus: Corpus, cfg: Config, run_dir: Path, best_bleu: float) -> None:
    """train.average_at_end: rank 0 writes avg.pt, the mean of the run's kept checkpoints, and logs its
    validation scores next to best.pt's (every rank takes part in the measuring)."""
    import copy

    from seq2seq.training import distributed
    from seq2seq.training.validation import measure

    kept = kept_checkpoints(run_dir)
    if distributed.is_main():
        payload = write_average(kept, run_dir / "avg.pt")
        model = copy.deepcopy(model)
        model.load_state_dict(payload["model"])
    scores, _ = measure(model, corpus, cfg)
    log.info("avg.pt (%d checkpoints): validation loss %.3f BLEU %.2f chrF %.2f (best.pt: BLEU %.2f)",
             len(kept), scores["loss"], scores["bleu"], scores["chrf"], best_bleu)
