"""Training: the toy task is learned, limits validate and save, runs are reproducible."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import toy_config, train_toy

from seq2seq.attention import Attention
from seq2seq.config import DecodeConfig
from seq2seq.data import read_parallel
from seq2seq.decoder import DecoderState
from seq2seq.translator import Translator


def metrics(run_dir: Path, key: str) -> list:
    """``key`` of every validation record in ``run_dir/metrics.jsonl``."""
    return [json.loads(line)[key] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    """The trainer's clock moves one second at every call; next(fake_clock) is the number of calls so far."""
    import seq2seq.trainer as trainer_module

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


def test_the_first_budget_to_run_out_sets_how_much_is_used() -> None:
    from seq2seq.config import TrainConfig
    from seq2seq.progress import Progress, budget_used

    t = TrainConfig(max_epochs=4, max_steps=100, max_minutes=10)
    assert budget_used(t, Progress(), 10, 0.0) == 0.0
    assert budget_used(t, Progress(epoch=2, batch_in_epoch=5, step=15), 10, 60.0) == 1.5 / 4  # epochs lead
    assert budget_used(t, Progress(epoch=2, batch_in_epoch=5, step=50), 10, 60.0) == 0.5  # steps lead
    assert budget_used(t, Progress(epoch=2, batch_in_epoch=5, step=50), 10, 480.0) == 0.8  # the clock leads
    assert budget_used(t, Progress(step=150), 10, 0.0) == 1.0  # spent: never more than all of it
    assert budget_used(TrainConfig(max_epochs=4, max_minutes=None), Progress(step=10**6), 10, 10**6) == 0.0


def test_cosine_rate_falls_from_peak_to_floor() -> None:
    from seq2seq.progress import cosine_rate

    assert cosine_rate(0.01, 0.001, 0.0) == pytest.approx(0.01)
    assert cosine_rate(0.01, 0.001, 0.5) == pytest.approx(0.0055)
    assert cosine_rate(0.01, 0.001, 1.0) == pytest.approx(0.001)
    rates = [cosine_rate(0.01, 0.001, i / 10) for i in range(11)]
    assert rates == sorted(rates, reverse=True)


def test_trained_cosine_rates_follow_the_steps(tmp_path: Path) -> None:
    from seq2seq.progress import cosine_rate

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
    from seq2seq.trainer import Trainer

    measure = Trainer.measure

    def flat_bleu(self: Trainer) -> tuple[dict, float]:
        record, _ = measure(self)
        return record | {"bleu": 10.0}, 10.0

    monkeypatch.setattr(Trainer, "measure", flat_bleu)
    trainer, run_dir = train_toy(tmp_path, "optim.schedule=plateau", "optim.lr_patience=1", "optim.lr_decay=0.5",
                                 "train.max_steps=8", "train.valid_every_steps=2", "train.patience=10")
    rates = metrics(run_dir, "lr")
    assert rates == [0.002, 0.002, 0.002, 0.001]  # best, 1 stall, 2 stalls (> lr_patience): halved from then on
    assert trainer.parts.lr == 0.001


def test_tokenizer_is_reused_for_the_same_data_and_settings(tmp_path: Path) -> None:
    from seq2seq.data import load_corpus

    cfg = toy_config(tmp_path)
    first = load_corpus(cfg.data).tokenizer
    models = list((tmp_path / "cache").iterdir())
    second = load_corpus(cfg.data).tokenizer
    assert list((tmp_path / "cache").iterdir()) == models and second.src_model == first.src_model
    load_corpus(toy_config(tmp_path, "data.vocab_size=30").data)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_subword_sampling_resegments_every_epoch_reproducibly(tmp_path: Path) -> None:
    from seq2seq.data import BatchPlan, load_corpus

    cfg = toy_config(tmp_path, "data.sampling_alpha=0.1")
    corpus = load_corpus(cfg.data)
    assert corpus.resegmenter(toy_config(tmp_path).data) is None  # off unless data.sampling_alpha is set
    plan = BatchPlan(corpus.train, 500, None, seed=7, resegment=corpus.resegmenter(cfg.data))
    epochs = {}
    for epoch in (1, 2, 1):
        batches = plan.epoch(epoch)
        assert sorted(i for b in batches for i in b) == list(range(len(plan.examples)))
        assert epochs.setdefault(epoch, plan.examples) == plan.examples  # the same again for the same epoch
    assert epochs[1] != epochs[2] and epochs[1] != corpus.train  # sampled, not the one best segmentation
    tok = corpus.tokenizer
    assert [e.index for e in epochs[1]] == [e.index for e in corpus.train]
    for side, proc in (("src", tok.src), ("tgt", tok.tgt)):  # only the segmentation changes, never the text
        best = [getattr(e, side) for e in corpus.train]
        sampled = [getattr(e, side) for e in epochs[1]]
        assert [proc.decode(s) for s in sampled] == [proc.decode(s) for s in best]
    assert sum(len(e.tgt) for e in epochs[1]) > sum(len(e.tgt) for e in corpus.train)


def test_decoder_state_select_reorders_everything() -> None:
    state = DecoderState(torch.arange(6.0).view(1, 3, 2), None, torch.arange(3.0).view(3, 1))
    picked = state.select(torch.tensor([2, 0]))
    assert picked.hidden.tolist() == [[[4.0, 5.0], [0.0, 1.0]]] and picked.feed.tolist() == [[2.0], [0.0]]


def test_cli_trains_and_refuses_to_overwrite_a_run(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("seq2seq-train"))
    args = [exe, "experiment=toy", "train.max_steps=3", f"data.dir={tmp_path / 'data'}",
            f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"]
    out = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for name in ("best.pt", "last.pt", "spm.model", "metrics.jsonl", "train.log"):
        assert (tmp_path / "run" / name).is_file(), name
    assert out.stdout == ""  # logs go to stderr
    again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already holds a run" in again.stderr and "resume=true" in again.stderr


def test_non_finite_losses_are_skipped_then_stop_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import seq2seq.step as step_module
    from seq2seq.data import load_corpus
    from seq2seq.trainer import Trainer, TrainingStopped

    cfg = toy_config(tmp_path, "train.max_bad_steps=3", "train.save_every_steps=4")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    trainer = Trainer(cfg, load_corpus(cfg.data), run_dir)
    real_loss = step_module.token_loss

    def poisoned(logits, target, smoothing):
        loss = real_loss(logits, target, smoothing)
        return loss * float("nan") if trainer.progress.step in (2, 6, 7, 8) else loss

    monkeypatch.setattr(step_module, "token_loss", poisoned)
    with pytest.raises(TrainingStopped, match="3 non-finite losses or gradients in a row at step 8.*last.pt"):
        trainer.run()
    assert trainer.progress.skipped_steps == 4
    saved = torch.load(run_dir / "last.pt", weights_only=True)
    assert saved["progress"]["step"] == 8  # saved at step 8: skipped steps leave the weights untouched
    for name, value in saved["model"].items():
        assert torch.isfinite(value).all(), name


def test_wall_time_is_counted_once_across_saves(tmp_path: Path, fake_clock: Iterator[float]) -> None:
    """Saving must not add the elapsed time again (train.max_minutes once stopped runs at half time)."""
    trainer, run_dir = train_toy(tmp_path, "train.max_steps=6", "train.save_every_steps=1")
    timing = [json.loads(line) for line in (run_dir / "timing.jsonl").read_text().splitlines()]
    calls = next(fake_clock)
    assert 0 < timing[-1]["elapsed_s"] < calls  # a double count would exceed the number of clock calls
    assert torch.load(run_dir / "last.pt", weights_only=True)["progress"]["elapsed_s"] < calls


def test_out_of_memory_names_the_batch_and_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from seq2seq.data import load_corpus
    from seq2seq.trainer import Trainer, TrainingStopped

    cfg = toy_config(tmp_path)
    trainer = Trainer(cfg, load_corpus(cfg.data), tmp_path)

    def no_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(trainer.parts, "net", no_memory)
    batch = trainer.plan.batch(trainer.plan.epoch(1)[0])
    with pytest.raises(TrainingStopped, match=r"out of memory on a batch of \d+ sentences.*lower train.batch_tokens"):
        trainer.step([batch], trainer.progress)
