"""Building and one optimizer step (seq2seq/training/step.py): accumulation, bf16, non-finite steps, out of memory."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import assert_close_weights, step_batches, toy_config, toy_trainer, train_step

from seq2seq.data.corpus import Batch, load_corpus
from seq2seq.errors import ConfigError
from seq2seq.training.trainer import Trainer


def test_accumulating_two_batches_equals_one_step_on_their_concatenation(tmp_path: Path) -> None:
    accumulated, whole = toy_trainer(tmp_path, "train.accumulate=2"), toy_trainer(tmp_path)
    batches = step_batches(whole, 2 * 3)
    for a, b in zip(batches[0::2], batches[1::2], strict=True):
        loss_acc = train_step(accumulated, accumulated.plan.batch(a), accumulated.plan.batch(b))
        loss_whole = train_step(whole, whole.plan.batch(a + b))
        assert loss_acc == pytest.approx(loss_whole, rel=1e-5)
    assert_close_weights(accumulated.model.state_dict(), whole.model.state_dict())


def test_bf16_autocast_trains_on_the_cpu(tmp_path: Path) -> None:
    bf16, fp32 = toy_trainer(tmp_path, "train.precision=bf16"), toy_trainer(tmp_path, "train.precision=fp32")
    for positions in step_batches(bf16, 3):
        loss = train_step(bf16, bf16.plan.batch(positions))
        reference = train_step(fp32, fp32.plan.batch(positions))
        assert loss is not None and math.isfinite(loss)
        assert loss == pytest.approx(reference, rel=0.05)  # bf16 keeps about 3 significant digits
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # autocast: fp32 master weights


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_is_bf16_where_the_cpu_has_it_natively_and_says_so(
        tmp_path: Path, native: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from seq2seq import device

    monkeypatch.setattr(device, "native_bf16", lambda: native)
    with caplog.at_level("INFO", logger="seq2seq.training.step"):
        trainer = toy_trainer(tmp_path, "device=cpu", "train.precision=auto")
    chosen = "bf16" if native else "fp32"
    assert trainer.parts.precision == chosen
    assert f"precision: {chosen} (train.precision=auto: this CPU" in caplog.text
    assert device.resolve_precision("auto", torch.device("cuda"))[0] == "fp32"  # not measured on GPUs
    assert device.resolve_precision("fp32", torch.device("cpu")) == ("fp32", "train.precision=fp32")  # the override
    # bf16 asked for by name is honoured; without native support the log says it is emulated and slow
    precision, why = device.resolve_precision("bf16", torch.device("cpu"))
    assert precision == "bf16" and ("emulated" in why) is not native


def test_bf16_autocast_is_what_the_step_runs_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The resolved precision reaches the forward pass: the logits come out of autocast in bfloat16."""
    trainer = toy_trainer(tmp_path, "device=cpu", "train.precision=bf16")
    dtypes = []
    model_forward = trainer.parts.net.forward
    monkeypatch.setattr(trainer.parts.net, "forward",
                        lambda *a, **k: dtypes.append((out := model_forward(*a, **k))[0].dtype) or out)
    train_step(trainer, trainer.plan.batch(step_batches(trainer, 1)[0]))
    assert dtypes == [torch.bfloat16]


def test_precision_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown train.precision 'fp8'; choose one of auto, bf16, fp16, fp32"):
        toy_config(tmp_path, "train.precision=fp8")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU.*use train.precision=bf16"):
        toy_trainer(tmp_path, "device=cpu", "train.precision=fp16")
    with pytest.raises(ConfigError, match="train.accumulate must be > 0"):
        toy_config(tmp_path, "train.accumulate=0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
            toy_trainer(tmp_path, "device=auto", "train.precision=fp16")  # auto resolved to the CPU


def test_single_process_trainer_moves_batches_to_its_device(tmp_path: Path) -> None:
    trainer = toy_trainer(tmp_path, "device=cpu")
    assert trainer.device == torch.device("cpu") and trainer.optimizer_step.world == 1
    batch = trainer.plan.batch(step_batches(trainer, 1)[0])
    assert isinstance(batch, Batch) and train_step(trainer, batch) is not None


def test_non_finite_losses_are_skipped_then_stop_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import seq2seq.training.step as step_module
    from seq2seq.training.trainer import TrainingStopped

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


def test_out_of_memory_names_the_batch_and_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from seq2seq.training.trainer import TrainingStopped

    cfg = toy_config(tmp_path)
    trainer = Trainer(cfg, load_corpus(cfg.data), tmp_path)

    def no_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(trainer.parts, "net", no_memory)
    batch = trainer.plan.batch(trainer.plan.epoch(1)[0])
    with pytest.raises(TrainingStopped, match=r"out of memory on a batch of \d+ sentences.*lower train.batch_tokens"):
        trainer.optimizer_step([batch], trainer.progress)
