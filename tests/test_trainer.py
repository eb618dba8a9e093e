"""The training loop (seq2seq/training/trainer.py): the toy task is learned, limits, schedules, the clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import toy_trainer, train_toy

from seq2seq.config import DecodeConfig
from seq2seq.data.corpus import read_parallel
from seq2seq.inference.translator import Translator
from seq2seq.nn.attention import Attention


def metrics(run_dir: Path, key: str) -> list:
    """``key`` of every validation record in ``run_dir/metrics.jsonl``."""
    return [json.loads(line)[key] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    """The trainer's clock moves one second at every call; next(fake_clock) is the number of calls so far."""
    import seq2seq.training.trainer as trainer_module

    clock = iter(float(i) for i in range(10**6))
    monkeypatch.setattr(trainer_module.time, "monotonic", lambda: next(clock))
    return clock


def exact_match(run_dir: Path) -> float:
    """Greedy exact-match accuracy of best.pt on the toy test split."""
    translator = Translator.from_checkpoint(run_dir / "best.pt", DecodeConfig(beam_size=1), device="cpu")
    data = translator.config.data
    src, ref = read_parallel(data.dir, data.test_split, data.src_lang, data.tgt_lang)
    return sum(h == r for h, r in zip(translator.translate(src), ref)) / len(ref)


def test_toy_task_is_learned(toy_run: Path) -> None:
    accuracy = exact_match(toy_run)
    assert accuracy >= 0.95, f"exact match {accuracy:.3f}"


def test_toy_accuracy_needs_attention(toy_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The accuracy above comes from the attention: with a zero context the same model fails."""

    def zero_context(self, query, keys, memory, mask):
        weights = mask.float() / mask.sum(-1, keepdim=True)
        return torch.zeros(memory.size(0), memory.size(2)), weights

    monkeypatch.setattr(Attention, "forward", zero_context)
    assert exact_match(toy_run) < 0.3


def test_run_directory_contents_and_metrics(toy_run: Path) -> None:
    for name in ("best.pt", "last.pt", "metrics.jsonl", "timing.jsonl"):
        assert (toy_run / name).is_file(), name
    records = [json.loads(line) for line in (toy_run / "metrics.jsonl").read_text().splitlines()]
    assert records and {"step", "epoch", "loss", "ppl", "bleu", "chrf", "lr"} <= set(records[0])
    assert max(r["bleu"] for r in records) > 90


def test_max_steps_validates_and_saves_and_is_reproducible(tmp_path: Path) -> None:
    a, run_a = train_toy(tmp_path / "a", "train.max_steps=12", "train.valid_every_steps=5")
    b, run_b = train_toy(tmp_path / "b", "train.max_steps=12", "train.valid_every_steps=5")
    assert a.progress.step == 12
    assert (run_a / "best.pt").is_file() and (run_a / "last.pt").is_file()
    assert metrics(run_a, "step") == [5, 10, 12]
    assert (run_a / "metrics.jsonl").read_text() == (run_b / "metrics.jsonl").read_text()
    for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(p, q), name


def test_trained_cosine_rates_follow_the_steps(tmp_path: Path) -> None:
    from seq2seq.training.progress import cosine_rate

    _, run_dir = train_toy(tmp_path, "optim.schedule=cosine", "train.max_steps=12", "train.valid_every_steps=4",
                           "optim.min_lr=0.0001")
    rates = metrics(run_dir, "lr")
    # each validation records the rate of the step before it: step k trains with (k - 1) / 12 of the budget
    # used (the epoch budget, 10 epochs of 55 batches, is further behind)
    assert rates == pytest.approx([cosine_rate(0.002, 0.0001, (k - 1) / 12) for k in (4, 8, 12)])


def test_cosine_rates_follow_the_clock_under_a_time_budget(tmp_path: Path, fake_clock: Iterator[float]) -> None:
    trainer, run_dir = train_toy(tmp_path, "optim.schedule=cosine", "train.max_minutes=1", "train.valid_every_steps=2")
    p = trainer.progress
    assert p.epoch == 1 and 2 < p.step < 55  # stopped by the 60 fake seconds, well inside the first epoch
    rates = metrics(run_dir, "lr")
    assert rates == sorted(rates, reverse=True) and len(set(rates)) == len(rates)
    # the epoch budget alone (under 55 of 550 batches) would keep the rate above 0.97 lr: the clock leads
    assert rates[-1] < 0.5 * trainer.cfg.optim.lr


def test_plateau_rates_drop_only_when_bleu_stalls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from seq2seq.training import trainer as trainer_module

    measure = trainer_module.measure

    def flat_bleu(*args: object) -> tuple[dict, float]:
        scores, _ = measure(*args)
        return scores | {"bleu": 10.0}, 10.0

    monkeypatch.setattr(trainer_module, "measure", flat_bleu)
    trainer, run_dir = train_toy(tmp_path, "optim.schedule=plateau", "optim.lr_patience=1", "optim.lr_decay=0.5",
                                 "train.max_steps=8", "train.valid_every_steps=2", "train.patience=10")
    rates = metrics(run_dir, "lr")
    assert rates == [0.002, 0.002, 0.002, 0.001]  # best, 1 stall, 2 stalls (> lr_patience): halved from then on
    assert trainer.parts.lr == 0.001


def test_wall_time_is_counted_once_across_saves(tmp_path: Path, fake_clock: Iterator[float]) -> None:
    """Saving must not add the elapsed time again (train.max_minutes once stopped runs at half time)."""
    trainer, run_dir = train_toy(tmp_path, "train.max_steps=6", "train.save_every_steps=1")
    timing = [json.loads(line) for line in (run_dir / "timing.jsonl").read_text().splitlines()]
    calls = next(fake_clock)
    assert 0 < timing[-1]["elapsed_s"] < calls  # a double count would exceed the number of clock calls
    assert torch.load(run_dir / "last.pt", weights_only=True)["progress"]["elapsed_s"] < calls


def test_accumulation_counts_optimizer_steps_and_global_batches(tmp_path: Path) -> None:
    trainer = toy_trainer(tmp_path, "train.accumulate=3", "train.max_steps=2", "train.valid_every_steps=100")
    batches = trainer.plan.epoch(1)
    groups = trainer.plan.steps(batches, 0, trainer.cfg.train.accumulate)
    assert [len(g) for g in groups][:2] == [3, 3]
    assert sum(len(g) for g in groups) == len(batches)
    trainer.run()
    assert trainer.progress.step == 2 and trainer.progress.batch_in_epoch == 6
