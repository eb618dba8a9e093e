"""The heartbeat logs on time (by its own clock) and only when nobody watches a progress bar."""

from __future__ import annotations

import logging

import pytest

from seq2seq.training.heartbeat import Heartbeat


def test_beats_every_interval_with_speed_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    beat = Heartbeat(30, enabled=True, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="seq2seq.training.heartbeat"):
        assert not beat.beat(5, 1, 1000.0, 0.1)
        now[0] = 30.0
        assert beat.beat(50, 1, 1234.0, 0.25)  # 30 s for a quarter: 90 s left
        now[0] = 45.0
        assert not beat.beat(60, 1, 1000.0, 0.3)
        now[0] = 61.0
        assert beat.beat(70, 2, 1000.0, 0.0)
    assert "step 50 epoch 1, 1234 target tokens/s, 25% of the budget, 1m30s left of the budget" in caplog.text
    assert "ETA unknown" in caplog.text


def test_silent_when_disabled_or_unset() -> None:
    now = [100.0]
    for beat in (Heartbeat(30, enabled=False, clock=lambda: now[0]), Heartbeat(None, enabled=True)):
        now[0] += 1000
        assert not beat.due() and not beat.beat(1, 1, 1.0, 0.5)
