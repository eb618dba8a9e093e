"""Where a run is (seq2seq/training/progress.py): the budget used and the cosine rate."""

from __future__ import annotations

import pytest


def test_the_first_budget_to_run_out_sets_how_much_is_used() -> None:
    from seq2seq.config import TrainConfig
    from seq2seq.training.progress import Progress, budget_used

    t = TrainConfig(max_epochs=4, max_steps=100, max_minutes=10)
    assert budget_used(t, Progress(), 10, 0.0) == 0.0
    assert budget_used(t, Progress(epoch=2, batch_in_epoch=5, step=15), 10, 60.0) == 1.5 / 4  # epochs lead
    assert budget_used(t, Progress(epoch=2, batch_in_epoch=5, step=50), 10, 60.0) == 0.5  # steps lead
    assert budget_used(t, Progress(epoch=2, batch_in_epoch=5, step=50), 10, 480.0) == 0.8  # the clock leads
    assert budget_used(t, Progress(step=150), 10, 0.0) == 1.0  # spent: never more than all of it
    assert budget_used(TrainConfig(max_epochs=4, max_minutes=None), Progress(step=10**6), 10, 10**6) == 0.0


def test_cosine_rate_falls_from_peak_to_floor() -> None:
    from seq2seq.training.progress import cosine_rate

    assert cosine_rate(0.01, 0.001, 0.0) == pytest.approx(0.01)
    assert cosine_rate(0.01, 0.001, 0.5) == pytest.approx(0.0055)
    assert cosine_rate(0.01, 0.001, 1.0) == pytest.approx(0.001)
    rates = [cosine_rate(0.01, 0.001, i / 10) for i in range(11)]
    assert rates == sorted(rates, reverse=True)
