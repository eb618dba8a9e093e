"""A training run's edges: which run resume=true means, a failed start's debris, SIGTERM."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from seq2seq.cli.launch import Terminated, remove_failed_start, resume_path, sigterm_as_interrupt
from seq2seq.errors import ConfigError


def test_resume_true_without_a_directory_points_to_the_latest_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs" / "mine"
    for i, name in enumerate(("2020-01-01", "2020-01-02")):
        (runs / name).mkdir(parents=True)
        (runs / name / "last.pt").write_bytes(b"x")
        os.utime(runs / name / "last.pt", (1000 + i, 1000 + i))
    new = runs / "2020-01-03"
    new.mkdir()
    with pytest.raises(ConfigError, match=f"latest run there is {runs / '2020-01-02'}: seq2seq-train resume=true "
                                          f"hydra.run.dir={runs / '2020-01-02'}"):
        resume_path("true", new, dir_given=False)
    assert resume_path("true", new, dir_given=True) == new / "last.pt"  # the directory's own: an error later
    assert resume_path("true", runs / "2020-01-01", dir_given=False) == runs / "2020-01-01" / "last.pt"
    assert resume_path("x/last.pt", new, dir_given=False) == Path("x/last.pt")
    assert resume_path(None, new, dir_given=False) is None and resume_path("false", new, False) is None
    assert resume_path("none", new, dir_given=False) is None  # "none" means unset here as in the config check
    with pytest.raises(ConfigError, match="no earlier run under"):
        resume_path("true", tmp_path / "other" / "new", dir_given=False)


def test_a_failed_start_is_removed_but_never_a_run(tmp_path: Path) -> None:
    failed = tmp_path / "failed"
    (failed / ".hydra").mkdir(parents=True)
    (failed / "train.log").write_text("error: ...")
    assert remove_failed_start(failed) and not failed.exists()
    default = tmp_path / "runs" / "mine" / "2020-01-01"  # Hydra's default: runs/{data.name}/{date}
    (default / ".hydra").mkdir(parents=True)
    (tmp_path / "runs" / "other").mkdir()
    assert remove_failed_start(default, empty_parents=2)
    assert not (tmp_path / "runs" / "mine").exists() and (tmp_path / "runs" / "other").is_dir()
    for kept, extra in (("run", "last.pt"), ("mine", "notes.txt")):
        (tmp_path / kept / ".hydra").mkdir(parents=True)
        (tmp_path / kept / extra).write_text("x")
        assert not remove_failed_start(tmp_path / kept) and (tmp_path / kept / extra).exists()


def test_sigterm_raises_terminated_inside_the_block() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
    assert signal.getsignal(signal.SIGTERM) == previous
    assert issubclass(Terminated, KeyboardInterrupt)  # the trainer saves last.pt as on Ctrl-C
