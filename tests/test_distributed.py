"""Scaling up: DDP over gloo, gradient accumulation, bf16 autocast, device / precision config, torchrun.

Equivalences are checked on weights after a few optimizer steps with dropout off. They hold up to float
rounding (sums taken in another order), so they are compared with a tolerance, not bitwise.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import toy_config

from seq2seq import distributed
from seq2seq.checkpoint import load_checkpoint
from seq2seq.data import Batch, load_corpus
from seq2seq.device import resolve_device
from seq2seq.errors import ConfigError
from seq2seq.trainer import Trainer

STEPS = 5
ATOL = 1e-5  # the same updates, the gradient summed in another order
NO_DROPOUT = ("model.dropout=0.0",)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toy_trainer(tmp: Path, *overrides: str) -> Trainer:
    cfg = toy_config(tmp, *NO_DROPOUT, *overrides)
    run_dir = tmp / f"run{distributed.rank()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(cfg, load_corpus(cfg.data), run_dir)


def train_step(trainer: Trainer, *batches: Batch) -> float | None:
    """One optimizer step of ``trainer`` over ``batches``: its loss, or None when skipped."""
    return trainer.step(list(batches), trainer.progress).loss


def step_batches(trainer: Trainer, n: int = STEPS) -> list[list[int]]:
    """The first ``n`` batches of epoch 1, as example positions."""
    return trainer.plan.epoch(1)[:n]


def assert_close_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=ATOL, msg=name)


def _ddp_worker(rank: int, world: int, port: int, tmp: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    distributed.init(torch.device("cpu"))
    try:
        trainer = toy_trainer(tmp)
        for positions in step_batches(trainer):
            half = len(positions) // 2
            mine = positions[:half] if rank == 0 else positions[half:]
            assert train_step(trainer, trainer.plan.batch(mine)) is not None
        if rank == 0:
            torch.save(trainer.model.state_dict(), tmp / "ddp.pt")
    finally:
        distributed.cleanup()


def test_two_gloo_processes_with_half_batches_equal_one_with_whole_batches(tmp_path: Path) -> None:
    single = toy_trainer(tmp_path)  # also writes the toy data and the tokenizer the workers reuse
    losses = [train_step(single, single.plan.batch(p)) for p in step_batches(single)]
    assert all(loss is not None and math.isfinite(loss) for loss in losses)
    mp.spawn(_ddp_worker, args=(2, free_port(), tmp_path), nprocs=2, join=True)
    assert_close_weights(single.model.state_dict(), torch.load(tmp_path / "ddp.pt", weights_only=True))
    start = toy_trainer(tmp_path / "other").model.state_dict()  # the test can fail: training moved the weights
    assert any(not torch.allclose(start[k], v, atol=ATOL) for k, v in single.model.state_dict().items())


def test_accumulating_two_batches_equals_one_step_on_their_concatenation(tmp_path: Path) -> None:
    accumulated, whole = toy_trainer(tmp_path, "train.accumulate=2"), toy_trainer(tmp_path)
    batches = step_batches(whole, 2 * 3)
    for a, b in zip(batches[0::2], batches[1::2], strict=True):
        loss_acc = train_step(accumulated, accumulated.plan.batch(a), accumulated.plan.batch(b))
        loss_whole = train_step(whole, whole.plan.batch(a + b))
        assert loss_acc == pytest.approx(loss_whole, rel=1e-5)
    assert_close_weights(accumulated.model.state_dict(), whole.model.state_dict())


def test_accumulation_counts_optimizer_steps_and_global_batches(tmp_path: Path) -> None:
    trainer = toy_trainer(tmp_path, "train.accumulate=3", "train.max_steps=2", "train.valid_every_steps=100")
    batches = trainer.plan.epoch(1)
    groups = trainer.plan.steps(batches, 0, trainer.cfg.train.accumulate)
    assert [len(g) for g in groups][:2] == [3, 3]
    assert sum(len(g) for g in groups) == len(batches)
    trainer.run()
    assert trainer.progress.step == 2 and trainer.progress.batch_in_epoch == 6


def test_bf16_autocast_trains_on_the_cpu(tmp_path: Path) -> None:
    bf16, fp32 = toy_trainer(tmp_path, "train.precision=bf16"), toy_trainer(tmp_path)
    for positions in step_batches(bf16, 3):
        loss = train_step(bf16, bf16.plan.batch(positions))
        reference = train_step(fp32, fp32.plan.batch(positions))
        assert loss is not None and math.isfinite(loss)
        assert loss == pytest.approx(reference, rel=0.05)  # bf16 keeps about 3 significant digits
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # autocast: fp32 master weights


def test_device_and_precision_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown device 'gpu'; use auto, cpu, cuda or cuda:N"):
        toy_trainer(tmp_path, "device=gpu")
    with pytest.raises(ConfigError, match="unknown train.precision 'fp8'; choose one of bf16, fp16, fp32"):
        toy_config(tmp_path, "train.precision=fp8")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU.*use train.precision=bf16"):
        toy_trainer(tmp_path, "device=cpu", "train.precision=fp16")
    with pytest.raises(ConfigError, match="train.accumulate must be > 0"):
        toy_config(tmp_path, "train.accumulate=0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            toy_trainer(tmp_path, "device=cuda")
        with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
            toy_trainer(tmp_path, "device=auto", "train.precision=fp16")  # auto resolved to the CPU


def test_shards_are_disjoint_equal_and_cover_whole_rounds() -> None:
    batches = list(range(11))
    shards = [distributed.shard(batches, rank, 3) for rank in range(3)]
    assert shards == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert distributed.shard(batches, 0, 1) == batches


def test_auto_device_gives_every_process_its_own_gpu_or_uses_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cpu")  # 2 processes, 1 GPU: share the CPU
    with pytest.raises(ConfigError, match=r"LOCAL_RANK=1 needs cuda:1 but this machine has 1 GPU\(s\)"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda", 1)


def test_single_process_trainer_moves_batches_to_its_device(tmp_path: Path) -> None:
    trainer = toy_trainer(tmp_path, "device=cpu")
    assert trainer.device == torch.device("cpu") and trainer.step.world == 1
    batch = trainer.plan.batch(step_batches(trainer, 1)[0])
    assert isinstance(batch, Batch) and train_step(trainer, batch) is not None


def test_torchrun_two_processes_end_to_end(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "seq2seq.train",
            "experiment=toy", "device=cpu", "train.max_steps=6", "train.valid_every_steps=3", "threads=1",
            "optim.schedule=cosine", "train.max_minutes=60",  # rank 0's clock reaches rank 1 every step
            f"data.dir={tmp_path / 'data'}", f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.name for p in run.glob("*.pt")) == ["best.pt", "last.pt"]
    assert not list(run.glob(".*.tmp"))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 6]  # written by rank 0 alone: no record twice
    assert all(r["kind"] == "valid" and math.isfinite(r["loss"]) for r in records)
    last = load_checkpoint(run / "last.pt")["progress"]
    assert last["step"] == 6 and last["finished"] and last["batch_in_epoch"] == 12  # global batches
    assert "2 processes" in out.stderr


def test_tensorboard_scalars_next_to_metrics(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = toy_trainer(tmp_path, "train.max_steps=2", "train.log_every_steps=1")
    trainer.run()
    events = EventAccumulator(str(trainer.run_dir / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/tokens_per_s", "valid/bleu", "valid/chrf", "valid/ppl"} <= tags
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    assert (trainer.run_dir / "metrics.jsonl").read_text().count("\n") == 1


def test_keep_freed_memory_applies_on_glibc() -> None:
    import platform

    from seq2seq import cpu

    code = "from seq2seq import cpu; print(cpu.keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(platform.libc_ver()[0] == "glibc")
    assert cpu.keep_freed_memory() == (out == "True")  # idempotent: the settings only ever take these values
