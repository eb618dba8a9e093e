"""Several training processes (seq2seq/training/distributed.py): DDP over gloo, shards, torchrun.

Equivalences are checked on weights after a few optimizer steps with dropout off. They hold up to float
summation order."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp
from conftest import ATOL, assert_close_weights, step_batches, toy_trainer, train_step

from seq2seq.checkpoint import load_checkpoint
from seq2seq.training import distributed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def test_shards_are_disjoint_equal_and_cover_whole_rounds() -> None:
    batches = list(range(11))
    shards = [distributed.shard(batches, rank, 3) for rank in range(3)]
    assert shards == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert distributed.shard(batches, 0, 1) == batches


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
