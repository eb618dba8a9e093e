"""seq2seq-serve as a child process on a free loopback port, for scripts/load_test.py and the tests; and the
lines a child process writes, read so that every wait for one has a deadline.

Reading a child's pipe with ``for line in proc.stderr`` checks a deadline only when a line arrives: a child
that hangs without a word blocks the reader forever. :class:`Lines` reads on a thread of its own into a
queue, so a wait ends at its deadline whatever the child does, and the pipe keeps being drained (a full pipe
would block the child).
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

HOST = "127.0.0.1"
# SIGINT as a terminal's Ctrl-C delivers it: a background job of a shell (`make test &`) starts with SIGINT
# ignored, which the server would inherit, and then uvicorn's graceful stop ends with status 0 instead of 130
SERVE = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
         "from seq2seq.cli.main import serve; serve()")
READY = f"running on http://{HOST}:"  # uvicorn's line once it listens


class Lines:
    """The lines of a child's text stream, read on a daemon thread from the start; :attr:`seen` holds those
    taken so far, in order."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self.closed = False  # the end of the stream has been taken
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._queue.put(line)
        except (OSError, ValueError):  # the stream was closed under us
            pass
        finally:
            self._queue.put(None)

    def wait_for(self, wanted: Callable[[str], bool], timeout: float) -> str | None:
        """The next line for which ``wanted`` is true (the lines before it go to :attr:`seen` too); None when the
        stream ends first. Raises TimeoutError when ``timeout`` seconds pass first, lines or none."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                tail = "".join(self.seen[-20:])
                raise TimeoutError(f"no such line within {timeout:g} s; the last lines:\n{tail}") from None
            if line is None:
                self.closed = True
                break
            self.seen.append(line)
            if wanted(line):
                return line
        return None

    def rest(self, timeout: float) -> str:
        """Everything until the stream ends (the child exits or closes it), as one string; TimeoutError when it
        has not ended within ``timeout`` seconds."""
        start = len(self.seen)
        self.wait_for(lambda line: False, timeout)
        return "".join(self.seen[start:])

    def text(self) -> str:
        """Every line read so far, without waiting."""
        while not self.closed:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self.closed = True
            else:
                self.seen.append(line)
        return "".join(self.seen)


class Server:
    """seq2seq-serve with ``checkpoint`` on a free loopback port (:attr:`port`), ``overrides`` added to its command
    line; its stderr is read all along (:attr:`lines`). Raises RuntimeError, with the log, when it exits or has
    not started listening within ``start_timeout`` seconds. A context manager: it is stopped on leaving."""

    def __init__(self, checkpoint: str | Path, *overrides: str, start_timeout: float = 120.0) -> None:
        cmd = [sys.executable, "-c", SERVE, f"checkpoint={checkpoint}", f"host={HOST}", "port=0", "device=cpu",
               *overrides]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                     env={**os.environ, "PYTHONUTF8": "1"})
        self.lines = Lines(self.proc.stderr)  # type: ignore[arg-type]
        try:
            ready = self.lines.wait_for(lambda line: READY in line, start_timeout)
        except TimeoutError:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"seq2seq-serve did not start within {start_timeout:g} s:\n{self.log[-3000:]}") from None
        if ready is None:
            raise RuntimeError(f"seq2seq-serve exited with status {self.proc.wait()}:\n{self.log[-3000:]}")
        self.port = int(ready.split(READY)[1].split()[0])

    @property
    def log(self) -> str:
        """Its stderr so far."""
        return self.lines.text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig``; the exit status (the process is killed if it has not ended within ``timeout`` s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            try:
                self.lines.rest(10)  # the rest of the log, up to the end of the pipe
            except TimeoutError:
                pass

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def post(conn: http.client.HTTPConnection, sentences: list[str]) -> list[str]:
    """POST ``sentences`` to /translate; their translations. RuntimeError for an answer other than 200."""
    conn.request("POST", "/translate", json.dumps({"text": sentences}), {"Content-Type": "application/json"})
    response = conn.getresponse()
    body = json.loads(response.read())
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {body.get('error')}")
    return [t["text"] for t in body["translations"]]


def in_flight_batch_tokens(lengths: list[int], in_flight: int) -> int:
    """decode.batch_tokens for batches of about ``in_flight`` sentences of these subword lengths (each
    counted with its EOS, as seq2seq.inference.decoding.length_batches counts them)."""
    return max(1, round(in_flight * sum(n + 1 for n in lengths) / max(1, len(lengths))))
