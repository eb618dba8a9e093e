"""Gather concurrent requests into shared token batches, decoded on one worker thread.

Requests wait in a bounded queue. The worker takes the first, waits up to ``wait_s`` for others (those
already queued join at once), and hands all their sentences with the same decode settings to one
:meth:`Translator.translations` call, which batches them by tokens in order of length the way
seq2seq-evaluate batches a file; each request then gets its own slice back, in its own order. Decoding
runs on the worker thread, so the event loop stays free to answer other requests meanwhile.

A request whose future is cancelled (its client went away, or its time ran out) leaves the queue at once
and is never decoded, unless its decoding has already started. A request that fails (a source too long, or
anything else) fails alone: a failed call is split in halves, each decoded again as one batch, until the
failing request is alone; the others are answered from the halves that succeed.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from seq2seq.config import DecodeConfig
from seq2seq.errors import Seq2SeqError
from seq2seq.inference.translator import Translation, Translator

log = logging.getLogger(__name__)

GATHER_SENTENCES = 512  # at most this many sentences per gathering (bounds one round's latency)


class QueueFull(Exception):
    """The batcher's queue holds ``max_queue`` requests already; try again later."""


@dataclass(eq=False)  # a job is itself: two requests for the same sentences are two jobs
class _Job:
    sentences: list[str]
    decode: DecodeConfig
    future: Future  # of list[Translation]


class Batcher:
    """One worker thread in front of one :class:`Translator`; start() before submit(), stop() at the end.

    ``max_queue``: how many requests may wait (not yet taken by the worker); :meth:`submit` raises
    :class:`QueueFull` beyond it. None: no bound.
    """

    def __init__(self, translator: Translator, wait_s: float, max_queue: int | None = None) -> None:
        self.translator = translator
        self.wait_s = wait_s
        self.max_queue = max_queue
        self._jobs: collections.deque[_Job] = collections.deque()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="seq2seq-batcher", daemon=True)
        self._stopping = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what was gathered, fail what is still queued, end the thread."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def queued(self) -> int:
        """Requests waiting, not yet taken by the worker."""
        with self._changed:
            return len(self._jobs)

    def submit(self, sentences: Sequence[str], decode: DecodeConfig) -> Future:
        """A future of the translations of ``sentences`` (in their order) with ``decode``'s settings.

        Cancelling the future before the worker starts on it takes the request out of the queue."""
        job = _Job(list(sentences), decode, Future())
        with self._changed:
            if not self._thread.is_alive() or self._stopping:
                raise RuntimeError("the batcher is not running: start() it (the app does so in its lifespan; "
                                   "in tests use `with TestClient(app) as client`)")
            if self.max_queue is not None and len(self._jobs) >= self.max_queue:
                raise QueueFull(f"{len(self._jobs)} requests are waiting already (the server's "
                                f"max_queue={self.max_queue}); try again in a moment")
            self._jobs.append(job)
            self._changed.notify()
        job.future.add_done_callback(lambda future: self._forget(job) if future.cancelled() else None)
        return job.future

    async def translate(self, sentences: Sequence[str], decode: DecodeConfig) -> list[Translation]:
        """:meth:`submit` for an event loop: awaits without blocking it; cancelling the await cancels the
        request (dropped if its decoding has not started)."""
        return await asyncio.wrap_future(self.submit(sentences, decode))

    def _forget(self, job: _Job) -> None:
        with self._changed:
            try:
                self._jobs.remove(job)
            except ValueError:  # taken by the worker already, which drops it as cancelled
                pass

    def _take(self, deadline: float | None) -> _Job | None:
        """The next waiting job; None when stopping, or when ``deadline`` (monotonic) passes first."""
        with self._changed:
            while not self._jobs and not self._stopping:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._changed.wait(left)
            return None if self._stopping or not self._jobs else self._jobs.popleft()

    def _run(self) -> None:
        while True:
            first = self._take(None)
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
            job = self._take(deadline)
            if job is None:
                break
            jobs.append(job)
            count += len(job.sentences)
        return jobs

    def _decode(self, jobs: list[_Job]) -> None:
        """One translations() call for ``jobs`` (same decode settings). When it fails, each half is decoded
        again as one call, down to the failing job alone, which gets the error (with its own line numbers)."""
        sentences = [s for job in jobs for s in job.sentences]
        try:
            results = self.translator.translations(sentences, jobs[0].decode)
        except Exception as err:  # noqa: BLE001  (the requests get an answer; the server keeps serving)
            if len(jobs) > 1:
                half = len(jobs) // 2
                self._decode(jobs[:half])
                self._decode(jobs[half:])
            else:
                if not isinstance(err, Seq2SeqError):
                    log.error("decoding %d sentences failed", len(sentences), exc_info=err)
                jobs[0].future.set_exception(err)
            return
        start = 0
        for job in jobs:
            job.future.set_result(results[start:start + len(job.sentences)])
            start += len(job.sentences)
        log.debug("decoded %d request(s), %d sentences", len(jobs), len(sentences))

    def _fail_queued(self) -> None:
        with self._changed:
            jobs, self._jobs = list(self._jobs), collections.deque()
        for job in jobs:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError("the server is shutting down"))


def _by_decode(jobs: list[_Job]) -> list[list[_Job]]:
    """Jobs grouped by identical decode settings, in order of their first job."""
    groups: dict[tuple, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(dataclasses.astuple(job.decode), []).append(job)
    return list(groups.values())
