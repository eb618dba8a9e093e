"""Gather concurrent requests into shared token batches, decoded on one worker thread.

Requests wait in a queue. The worker takes the first, waits up to ``wait_s`` for others (those already
queued join at once), and hands all their sentences with the same decode settings to one
:meth:`Translator.translations` call, which batches them by tokens in order of length the way
seq2seq-evaluate batches a file; each request then gets its own slice back, in its own order. Decoding
runs on the worker thread, so the event loop stays free to answer other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from seq2seq.config import DecodeConfig
from seq2seq.inference.translator import SourceTooLong, Translation, Translator

log = logging.getLogger(__name__)

GATHER_SENTENCES = 512  # at most this many sentences per gathering (bounds one round's latency)


@dataclass
class _Job:
    sentences: list[str]
    decode: DecodeConfig
    future: Future  # of list[Translation]


class Batcher:
    """One worker thread in front of one :class:`Translator`; start() before submit(), stop() at the end."""

    def __init__(self, translator: Translator, wait_s: float) -> None:
        self.translator = translator
        self.wait_s = wait_s
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="seq2seq-batcher", daemon=True)
        self._stopping = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what was gathered, fail what is still queued, end the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, sentences: Sequence[str], decode: DecodeConfig) -> Future:
        """A future of the translations of ``sentences`` (in their order) with ``decode``'s settings."""
        if not self._thread.is_alive() or self._stopping:
            raise RuntimeError("the batcher is not running: start() it (the app does so in its lifespan; "
                               "in tests use `with TestClient(app) as client`)")
        future: Future = Future()
        self._queue.put(_Job(list(sentences), decode, future))
        return future

    async def translate(self, sentences: Sequence[str], decode: DecodeConfig) -> list[Translation]:
        """:meth:`submit` for an event loop: awaits without blocking it."""
        return await asyncio.wrap_future(self.submit(sentences, decode))

    def _run(self) -> None:
        while not self._stopping:
            first = self._queue.get()
            if first is None:
                break
            jobs = [job for job in self._gather(first) if job.future.set_running_or_notify_cancel()]
            for group in _by_decode(jobs):
                self._decode(group)
        self._fail_queued()

    def _gather(self, first: _Job) -> list[_Job]:
        """``first`` and whatever arrives within ``wait_s`` of it (everything already queued included)."""
        jobs, count = [first], len(first.sentences)
        deadline = time.monotonic() + self.wait_s
        while count < GATHER_SENTENCES:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                self._stopping = True
                break
            jobs.append(job)
            count += len(job.sentences)
        return jobs

    def _decode(self, jobs: list[_Job]) -> None:
        """One translations() call for ``jobs`` (same decode settings); a too-long source fails only its job."""
        sentences = [s for job in jobs for s in job.sentences]
        try:
            results = self.translator.translations(sentences, jobs[0].decode)
        except SourceTooLong as err:
            if len(jobs) > 1:  # find the culprit: each job alone
                for job in jobs:
                    self._decode([job])
            else:
                jobs[0].future.set_exception(err)
            return
        except Exception as err:  # noqa: BLE001  (the requests get an answer; the server keeps serving)
            log.exception("decoding %d sentences failed", len(sentences))
            for job in jobs:
                job.future.set_exception(err)
            return
        start = 0
        for job in jobs:
            job.future.set_result(results[start:start + len(job.sentences)])
            start += len(job.sentences)
        log.debug("decoded %d request(s), %d sentences", len(jobs), len(sentences))

    def _fail_queued(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError("the server is shutting down"))


def _by_decode(jobs: list[_Job]) -> list[list[_Job]]:
    """Jobs grouped by identical decode settings, in order of their first job."""
    groups: dict[tuple, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(dataclasses.astuple(job.decode), []).append(job)
    return list(groups.values())
