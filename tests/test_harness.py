"""seq2seq/serving/harness.py's Lines: a wait for a child's line ends at its deadline even when the child is
silent, and the lines before the one waited for are kept. (Its Server runs in tests/test_serve.py and
tests/test_load_test.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from seq2seq.serving.harness import Lines


def child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_a_silent_child_does_not_block_the_wait() -> None:
    proc = child("import time; print('started', flush=True); time.sleep(600)")
    try:
        lines = Lines(proc.stdout)  # type: ignore[arg-type]
        assert lines.wait_for(lambda line: line.startswith("started"), timeout=60) == "started\n"
        with pytest.raises(TimeoutError, match="no such line within 0.2 s; the last lines:\nstarted"):
            lines.wait_for(lambda line: "never" in line, timeout=0.2)  # the child prints nothing more
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_lines_before_the_wanted_one_are_kept_and_the_end_is_none() -> None:
    proc = child("print('a'); print('b'); print('c')")
    try:
        lines = Lines(proc.stdout)  # type: ignore[arg-type]
        assert lines.wait_for(lambda line: line == "b\n", timeout=60) == "b\n"
        assert lines.seen == ["a\n", "b\n"]
        assert lines.wait_for(lambda line: line == "z\n", timeout=60) is None  # the stream ended first
        assert lines.closed and lines.text() == "a\nb\nc\n"
        assert lines.rest(timeout=1) == ""
    finally:
        proc.kill()
        proc.wait()
