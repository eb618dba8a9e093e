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


def test_noam_rate_warms_up_then_falls_as_the_inverse_square_root() -> None:
    """Vaswani et al. (2017), eq. (3), d_model^-0.5 min(step^-0.5, step warmup^-1.5), peaks at step = warmup."""
    from seq2seq.training.progress import noam_rate

    assert noam_rate(1e-3, 4000, 1) == pytest.approx(2.5e-7)
    assert noam_rate(1e-3, 4000, 2000) == pytest.approx(5e-4)
    assert noam_rate(1e-3, 4000, 4000) == pytest.approx(1e-3)
    assert noam_rate(1e-3, 4000, 16000) == pytest.approx(5e-4)
    assert noam_rate(1e-3, 4000, 0) == noam_rate(1e-3, 4000, 1)  # never 0
    d_model, warmup = 512, 4000
    for step in (1, 100, 4000, 10**5):  # eq. (3) itself, with peak = (d_model warmup)^-0.5
        eq3 = d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)
        assert noam_rate((d_model * warmup) ** -0.5, warmup, step) == pytest.approx(eq3)


def test_the_trainer_sets_the_noam_rate_of_the_next_step(tmp_path) -> None:
    from conftest import toy_trainer

    trainer = toy_trainer(tmp_path, "optim.schedule=noam", "optim.warmup_steps=4", "optim.lr=0.002")
    for done, rate in ((0, 0.0005), (3, 0.002), (15, 0.001)):
        trainer.progress.step = done
        trainer.schedule()
        assert trainer.parts.lr == pytest.approx(rate)


def test_the_cosine_warms_up_linearly_over_warmup_steps_then_follows_the_budget(tmp_path) -> None:
    """optim.warmup_steps=4 under the cosine: steps 1-4 take 1/4 .. 4/4 of the cosine's rate, the rest all of it;
    0 (the default) leaves the cosine as it was."""
    from conftest import toy_trainer

    from seq2seq.training.progress import cosine_rate

    for warmup in (0, 4):
        trainer = toy_trainer(tmp_path / str(warmup), "optim.schedule=cosine", f"optim.warmup_steps={warmup}",
                              "optim.lr=0.002", "optim.min_lr=0.0", "train.max_steps=100")
        for done in (0, 1, 3, 4, 50):
            trainer.progress.step = done
            trainer.schedule()
            cosine = cosine_rate(0.002, 0.0, done / 100)
            expected = cosine * min(1.0, (done + 1) / warmup) if warmup else cosine
            assert trainer.parts.lr == pytest.approx(expected)
    assert trainer.parts.lr == pytest.approx(0.001)  # step 51 of 100: half-way down, warmed up long since


def test_warmup_steps_is_checked_against_the_schedule(tmp_path) -> None:
    from conftest import toy_config

    from seq2seq.errors import ConfigError

    with pytest.raises(ConfigError, match="noam warms up by definition.*optim.warmup_steps=N"):
        toy_config(tmp_path, "optim.schedule=noam")
    with pytest.raises(ConfigError, match="optim.warmup_steps=10 applies to optim.schedule=cosine and noam"):
        toy_config(tmp_path, "optim.schedule=plateau", "optim.warmup_steps=10")
    noam = toy_config(tmp_path, "optim=noam", "optim.schedule=noam").optim  # the toy recipe sets plateau after it
    assert (noam.schedule, noam.warmup_steps) == ("noam", 4000)
