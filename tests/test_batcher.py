"""The batcher: concurrent requests share one translations() call, answers go back to their own request."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from seq2seq.config import DecodeConfig, TranslatorConfig
from seq2seq.inference.translator import SourceTooLong, Translator
from seq2seq.serving.batcher import Batcher, QueueFull


class Spy:
    """Records every translations() call of a real translator; each call says it ``started``, then waits for
    ``gate``."""

    def __init__(self, real: Translator) -> None:
        self.real, self.calls, self.gate, self.started = real, [], threading.Event(), threading.Event()

    def translations(self, sentences: list[str], decode: DecodeConfig) -> list:
        self.started.set()
        self.gate.wait(60)
        self.calls.append((list(sentences), decode.beam_size))
        return self.real.translations(sentences, decode)


HOLD = ["z y x"]  # a request that holds the worker in translations() while the others queue up


def held_batcher(spy: Spy, translator: Translator) -> tuple[Batcher, object]:
    """A started batcher whose worker is inside translations() for HOLD (the future returned), so whatever is
    submitted next waits in the queue, and the worker finds all of it there once the gate opens: what it
    gathers does not depend on how fast the submissions come."""
    batcher = Batcher(spy, wait_s=0.0)  # type: ignore[arg-type]
    batcher.start()
    held = batcher.submit(HOLD, translator.decode)
    assert spy.started.wait(60), "the worker never took the first request"
    return batcher, held


@pytest.fixture(scope="module")
def translator(toy_run: Path) -> Translator:
    return Translator.from_config(TranslatorConfig(str(toy_run / "best.pt"), device="cpu", max_src_len_policy="error"))


def test_queued_requests_share_one_call_and_get_their_own_answers(translator: Translator) -> None:
    spy = Spy(translator)
    batcher, held = held_batcher(spy, translator)
    try:
        jobs = [["a b c", "d e"], ["f g h i"], ["j", "", "k l m"]]
        futures = [batcher.submit(j, translator.decode) for j in jobs]
        spy.gate.set()
        answers = [[t.text for t in f.result(60)] for f in futures]
        assert held.result(60)[0].text == translator.translate(HOLD)[0]
    finally:
        spy.gate.set()
        batcher.stop()
    assert spy.calls == [(HOLD, 5), ([s for j in jobs for s in j], 5)]  # one call for all three
    assert answers == [translator.translate(j) for j in jobs]


def test_different_decode_settings_are_decoded_apart(translator: Translator) -> None:
    spy = Spy(translator)
    batcher, _ = held_batcher(spy, translator)
    try:
        greedy = translator.with_decode(beam_size=1)
        futures = [batcher.submit(["a b"], translator.decode), batcher.submit(["c d"], greedy),
                   batcher.submit(["e f"], translator.decode)]
        spy.gate.set()
        answers = [f.result(60)[0].text for f in futures]
    finally:
        spy.gate.set()
        batcher.stop()
    assert spy.calls == [(HOLD, 5), (["a b", "e f"], 5), (["c d"], 1)]  # one call per setting, in order of the first
    assert answers == [translator.translate(["a b"])[0], translator.translate(["c d"], beam_size=1)[0],
                       translator.translate(["e f"])[0]]


def test_a_too_long_source_fails_only_its_own_request(translator: Translator) -> None:
    batcher = Batcher(translator, wait_s=0.5)
    batcher.start()
    try:
        ok = batcher.submit(["a b c"], translator.decode)
        bad = batcher.submit(["x " * 40], translator.decode)
        assert ok.result(60)[0].text == translator.translate(["a b c"])[0]
        with pytest.raises(SourceTooLong):
            bad.result(60)
    finally:
        batcher.stop()


def test_submit_before_start_says_what_to_do(translator: Translator) -> None:
    with pytest.raises(RuntimeError, match="start"):
        Batcher(translator, wait_s=0.0).submit(["a"], translator.decode)


class Failing:
    """A translator stand-in that fails any call holding the sentence "boom"; records the calls that succeed."""

    def __init__(self, real: Translator) -> None:
        self.real, self.calls, self.gate = real, [], threading.Event()

    def translations(self, sentences: list[str], decode: DecodeConfig) -> list:
        self.gate.wait(30)
        if "boom" in sentences:
            raise RuntimeError("boom")
        self.calls.append(list(sentences))
        return self.real.translations(sentences, decode)


def test_a_failing_request_fails_alone_and_the_others_are_answered(translator: Translator) -> None:
    failing = Failing(translator)
    batcher = Batcher(failing, wait_s=0.5)  # type: ignore[arg-type]
    batcher.start()
    try:
        jobs = [["a b"], ["boom"], ["c d", "e"], ["f g h"]]
        futures = [batcher.submit(j, translator.decode) for j in jobs]
        failing.gate.set()
        with pytest.raises(RuntimeError, match="boom"):
            futures[1].result(60)
        answers = [[t.text for t in futures[i].result(60)] for i in (0, 2, 3)]
    finally:
        batcher.stop()
    assert answers == [translator.translate(jobs[i]) for i in (0, 2, 3)]
    assert len(failing.calls) < 3  # the others still share calls, not one each


def test_after_a_too_long_source_the_others_still_share_calls(translator: Translator) -> None:
    spy = Spy(translator)
    batcher = Batcher(spy, wait_s=0.5)  # type: ignore[arg-type]
    batcher.start()
    try:
        jobs = [["a b c"], ["x " * 40], ["d e"], ["f g", "h"]]
        futures = [batcher.submit(j, translator.decode) for j in jobs]
        spy.gate.set()
        with pytest.raises(SourceTooLong, match="line 1: the source has"):  # its own line number
            futures[1].result(60)
        answers = [[t.text for t in futures[i].result(60)] for i in (0, 2, 3)]
    finally:
        batcher.stop()
    assert answers == [translator.translate(jobs[i]) for i in (0, 2, 3)]
    assert any(len(sentences) > 2 for sentences, _ in spy.calls if "x " * 40 not in sentences)


def test_a_full_queue_refuses_and_a_cancelled_request_leaves_it(translator: Translator) -> None:
    spy = Spy(translator)
    batcher = Batcher(spy, wait_s=0.0, max_queue=2)  # type: ignore[arg-type]
    batcher.start()
    try:
        first = batcher.submit(["a b"], translator.decode)
        for _ in range(400):  # bounded: until the worker has taken the first (it waits at the gate)
            if batcher.queued == 0:
                break
            threading.Event().wait(0.05)
        waiting = [batcher.submit(["c d"], translator.decode), batcher.submit(["e f"], translator.decode)]
        with pytest.raises(QueueFull, match="max_queue=2"):
            batcher.submit(["g h"], translator.decode)
        assert waiting[0].cancel() and batcher.queued == 1  # out of the queue at once
        third = batcher.submit(["g h"], translator.decode)
        spy.gate.set()
        answers = [f.result(60)[0].text for f in (first, waiting[1], third)]
    finally:
        batcher.stop()
    assert answers == translator.translate(["a b", "e f", "g h"])
    assert all("c d" not in sentences for sentences, _ in spy.calls)  # the cancelled one was never decoded
