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

import pytest
import torch
import torch.multiprocessing as mp
from conftest import ATOL, assert_close_weights, multi30k_subset, needs_multi30k, step_batches, toy_trainer, train_step

from seq2seq.checkpoint import load_checkpoint
from seq2seq.errors import ConfigError
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


def test_whole_rounds_keep_every_pair_and_give_every_rank_as_many_steps() -> None:
    batches = [[i] for i in range(11)]
    rounds = distributed.whole_rounds(batches, 3)
    shards = [distributed.shard(rounds, rank, 3) for rank in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert sorted(i for shard in shards for batch in shard for i in batch) == list(range(11))  # each pair once
    assert shards[0] == [[0], [3], [6]] and shards[1] == [[1], [4], [7, 10]] and shards[2] == [[2], [5], [8, 9]]
    assert distributed.whole_rounds(batches, 1) == batches and distributed.shard(batches, 0, 1) == batches
    with pytest.raises(ConfigError, match="an epoch has 2 batch"):
        distributed.whole_rounds(batches[:2], 3)


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


# every process's epoch plan, written where the test can read it: (rank, epoch, steps, the pair indices it trains)
PLANS = """
import json, os, sys
from pathlib import Path
from seq2seq.training.plan import BatchPlan
from seq2seq.cli.main import train

out, steps = Path(sys.argv.pop(1)), BatchPlan.steps

def logged(self, batches, done, accumulate):
    mine = steps(self, batches, done, accumulate)
    pairs = [self.examples[i].index for group in mine for batch in group for i in batch]
    with open(out / f"rank{os.environ['RANK']}.jsonl", "a") as f:
        f.write(json.dumps([len(mine), pairs]) + "\\n")
    return mine

BatchPlan.steps = logged
train()
"""


@needs_multi30k
def test_torchrun_with_subword_sampling_agrees_on_every_epoch(tmp_path: Path) -> None:
    """Two processes, the default's subword sampling on: each epoch, both take as many steps, and together they
    train on every pair exactly once (with SentencePiece's own sampler they segmented differently)."""
    data = multi30k_subset(tmp_path / "m30k", 800, 50)
    args = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(tmp_path / "plans.py"), str(tmp_path),
            "model=small", "data.vocab_size=500", "data.max_len=1000", "device=cpu", "train.max_epochs=3",
            "train.max_minutes=null", "decode=greedy", "threads=1",
            "train.batch_tokens=1300",  # 27 batches an epoch: one past the last whole round of two
            f"data.dir={data}",
            f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"]
    (tmp_path / "plans.py").write_text(PLANS)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    plans = [[json.loads(line) for line in (tmp_path / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert len(plans[0]) == len(plans[1]) == 3  # three epochs, each planned once
    for (steps0, pairs0), (steps1, pairs1) in zip(*plans, strict=True):
        assert steps0 == steps1
        assert sorted(pairs0 + pairs1) == list(range(800))  # every pair once (data.max_len keeps them all)


# seq2seq-train under torchrun, except that rank 0, after writing last.pt at step KILL_AT, touches a marker and
# waits to be killed (rank 1 then waits in the next step's all-reduce)
VICTIM = """
import os, sys, time
from pathlib import Path
from seq2seq.training.run_checkpoints import RunCheckpoints
from seq2seq.cli.main import train

marker, kill_at = Path(sys.argv.pop(1)), int(sys.argv.pop(1))
(marker.parent / f"pid{os.environ['RANK']}").write_text(str(os.getpid()))  # torchrun starts each in a session
save = RunCheckpoints.save

def save_then_wait(self, name, progress, every_rank=True):
    save(self, name, progress, every_rank)
    if name == "last.pt" and progress.step == kill_at and os.environ["RANK"] == "0":
        marker.touch()
        time.sleep(600)

RunCheckpoints.save = save_then_wait
train()
"""


def test_torchrun_killed_and_resumed_matches_an_uninterrupted_run_bitwise(tmp_path: Path) -> None:
    """Every process's random state (dropout) is saved and restored: 2 processes, SIGKILL, resume."""
    import contextlib
    import signal
    import time

    def torchrun(script: list[str], run: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *script, "experiment=toy",
                "device=cpu", "train.max_steps=12", "train.save_every_steps=3", "threads=1",
                f"data.dir={tmp_path / 'data'}", f"data.cache_dir={tmp_path / 'cache'}",
                f"hydra.run.dir={tmp_path / run}", *extra]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(torchrun(["-m", "seq2seq.train"], "ref"), check=True, capture_output=True, timeout=600, env=env)
    (tmp_path / "victim.py").write_text(VICTIM)
    marker = tmp_path / "saved"
    victim = subprocess.Popen(torchrun([str(tmp_path / "victim.py"), str(marker), "6"], "killed"), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not marker.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in [victim.pid] + [int((tmp_path / f"pid{rank}").read_text()) for rank in (0, 1)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # torchrun and both processes, at once
    victim.wait()
    assert marker.exists(), "the victim never reached step 6"
    saved = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert saved["progress"]["step"] == 6 and len(saved["rng_ranks"]) == 2
    out = subprocess.run(torchrun(["-m", "seq2seq.train"], "killed", "resume=true"), capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    ref, got = load_checkpoint(tmp_path / "ref" / "last.pt"), load_checkpoint(tmp_path / "killed" / "last.pt")
    assert got["progress"]["step"] == 12
    for name, value in ref["model"].items():
        assert torch.equal(value, got["model"][name]), name
