"""The edges of a training run started from the command line: its directory, signals and failed starts.

- which checkpoint ``resume=`` means, and which directory a ``resume=true`` without ``hydra.run.dir`` meant;
- a directory that already holds a run is not overwritten;
- SIGTERM (schedulers send it before SIGKILL) is handled like Ctrl-C: last.pt is saved, exit status 143;
- a start that fails before any checkpoint is written leaves no directory behind; an error after that
  is written to train.log too;
- :func:`train`: the run itself, on every process of a torchrun.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.contrib.logging import logging_redirect_tqdm

from seq2seq.config import Config, resume_choice
from seq2seq.errors import ConfigError, Seq2SeqError

log = logging.getLogger(__name__)

RUN_FILES = (".hydra", "train.log", "spm.model", "spm.src.model", "spm.tgt.model", "metrics.jsonl", "timing.jsonl",
             "tb")  # what a start writes before its first checkpoint


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled like Ctrl-C (the trainer saves last.pt), then exit status 143."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` in the main thread."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated("terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def latest_run(runs: Path, exclude: Path) -> Path | None:
    """The directory under ``runs`` (e.g. runs/multi30k_en_de) whose last.pt was written last."""
    found = [p.parent for p in runs.glob("*/last.pt") if p.parent.resolve() != exclude.resolve()]
    return max(found, key=lambda d: (d / "last.pt").stat().st_mtime, default=None)


def resume_path(value: str | None, run_dir: Path, dir_given: bool) -> Path | None:
    """The checkpoint ``resume=`` names: None, ``true`` (the run directory's last.pt) or a path."""
    choice = resume_choice(value)
    if choice is None:
        return None
    if choice != "true":
        return Path(choice)
    if (run_dir / "last.pt").exists() or dir_given:
        return run_dir / "last.pt"
    latest = latest_run(run_dir.parent, run_dir)
    where = (f"the latest run there is {latest}: seq2seq-train resume=true hydra.run.dir={latest}" if latest
             else f"there is no earlier run under {run_dir.parent}")
    raise ConfigError(f"resume=true continues the run in hydra.run.dir, and without hydra.run.dir this start made "
                      f"a new directory ({run_dir}); {where}")


def check_new_run(run_dir: Path, resume: Path | None, init_from: str | None) -> None:
    """A run directory that holds a run (last.pt) is continued with resume=..., never overwritten."""
    if resume is not None or not (run_dir / "last.pt").exists():
        return
    from seq2seq.checkpoint import load_checkpoint

    finished = load_checkpoint(run_dir / "last.pt")["progress"]["finished"]
    longer = (" (a finished run: raise train.max_steps, train.max_epochs or train.max_minutes to train it longer)"
              if finished else "")
    start = "" if init_from else f", or start a new run from its weights with init_from={run_dir / 'last.pt'}"
    raise ConfigError(f"run directory {run_dir} already holds a run (last.pt); continue it with resume=true"
                      f"{longer}, or choose a new directory with hydra.run.dir=...{start}")


def remove_stale_writes(run_dir: Path) -> None:
    """Checkpoint writes that a killed process left half done (``.NAME.PID.tmp``; an interrupt removes its own,
    a SIGKILL cannot): no process writes into this directory now."""
    stale = list(run_dir.glob(".*.pt.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.info("removed %d unfinished checkpoint write(s) of a killed process: %s", len(stale),
                 ", ".join(p.name for p in stale))


def log_error(message: str) -> None:
    """Write ``error: message`` to the log files only (stderr gets it from the console script)."""
    record = logging.LogRecord("seq2seq", logging.ERROR, __file__, 0, "error: %s", (message,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def remove_failed_start(run_dir: Path, empty_parents: int = 0) -> bool:
    """Remove what a start that failed before its first checkpoint wrote (and the directory, when that
    leaves it empty), then up to ``empty_parents`` parents that are left empty (the default
    ``runs/{data.name}/``); a directory holding any ``*.pt`` or other files is kept. True when removed."""
    if not run_dir.is_dir() or any(run_dir.glob("*.pt")):
        return False
    if any(p.name not in RUN_FILES for p in run_dir.iterdir()):
        return False
    for handler in logging.getLogger().handlers:  # train.log is about to go
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == run_dir.resolve():
            logging.getLogger().removeHandler(handler)
            handler.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in list(run_dir.parents)[:empty_parents]:
        try:
            parent.rmdir()  # only an empty one
        except OSError:
            break
    return not run_dir.exists()


@contextlib.contextmanager
def failed_start_removed(run_dir: Path, empty_parents: int) -> Iterator[None]:
    """The policy for a start that fails (a user error, Ctrl-C) before its first checkpoint: the error goes to
    train.log, and the run directory (with up to ``empty_parents`` parents left empty) is removed, which the
    message then says. Only rank 0 cleans up."""
    from seq2seq.training import distributed

    try:
        yield
    except (Seq2SeqError, KeyboardInterrupt) as err:
        if not distributed.is_main():
            raise
        log_error(str(err) or type(err).__name__)
        if not remove_failed_start(run_dir, empty_parents):
            raise
        note = f"nothing was trained, so {run_dir} was removed"
        if isinstance(err, Seq2SeqError):
            raise type(err)(f"{err} ({note})") from None
        print(f"({note})", file=sys.stderr, flush=True)
        raise


def start_training(cfg: Config, run_dir: Path, dir_given: bool) -> None:
    """Start (or resume, or continue from weights) the run in ``run_dir``, on every process of the run;
    ``dir_given``: the user chose the directory (or it is a sweep's)."""
    from seq2seq.device import resolve_device
    from seq2seq.training import distributed
    from seq2seq.training.trainer import Trainer

    device = resolve_device(cfg.device)
    distributed.init(device)  # under torchrun: join the process group
    try:
        # rank 0's directory for all ranks (the default hydra.run.dir holds a time that may differ)
        run_dir = Path(distributed.broadcast_object(str(run_dir)))
        if not distributed.is_main():
            logging.getLogger().setLevel(logging.WARNING)  # rank 0 logs progress; the others only problems
        resume = resume_path(cfg.resume, run_dir, dir_given)
        check_new_run(run_dir, resume, cfg.init_from)
        if distributed.is_main():
            remove_stale_writes(run_dir)
        log.info("run directory: %s (%d process%s)", run_dir, distributed.world_size(),
                 "es" if distributed.world_size() > 1 else "")
        with logging_redirect_tqdm(), sigterm_as_interrupt():
            corpus = _load_corpus_once(cfg)
            if distributed.is_main():
                corpus.tokenizer.save(run_dir)
            trainer = Trainer(cfg, corpus, run_dir, device)
            if resume is not None:
                trainer.resume(resume)
            elif cfg.init_from is not None:
                trainer.init_from(Path(cfg.init_from), cfg.init_reset)
            trainer.run()
    finally:
        distributed.cleanup()


def _load_corpus_once(cfg: Config) -> Any:
    """Rank 0 first (it may generate the toy data and train SentencePiece), then the others from its files."""
    from seq2seq.data.corpus import load_corpus
    from seq2seq.training import distributed

    if not distributed.is_main():
        distributed.barrier()
    corpus = load_corpus(cfg.data)
    if distributed.is_main():
        distributed.barrier()
    return corpus
