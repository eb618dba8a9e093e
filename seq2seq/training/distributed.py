"""Several training processes (torchrun): process group, rank and world size, batch shards, collectives.

Without torchrun (``WORLD_SIZE`` unset or 1) every helper is a cheap no-op for a world of one process,
so the single-process path runs no collective at all. Under torchrun the process group is set up from
torchrun's environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``): gloo on the CPU, nccl on GPUs.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from seq2seq.device import env_world_size
from seq2seq.errors import ConfigError

T = TypeVar("T")
log = logging.getLogger(__name__)
TIMEOUT = datetime.timedelta(hours=2)  # other ranks wait while rank 0 validates a large corpus


def init(device: torch.device) -> None:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1: nccl for CUDA devices, gloo otherwise."""
    if env_world_size() <= 1 or is_initialized():
        return
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ConfigError(f"WORLD_SIZE is set but {name} is not; start several processes with torchrun "
                              "(python -m torch.distributed.run --nproc_per_node N -m seq2seq.train ...)")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)


def cleanup() -> None:
    if is_initialized():
        dist.destroy_process_group()


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """Rank 0 validates, logs, and writes checkpoints and metrics."""
    return rank() == 0


def whole_rounds(batches: list[list[int]], world: int) -> list[list[int]]:
    """The epoch's batches as whole rounds of ``world`` (one batch per rank), every example kept: the ``r``
    batches past the last whole round join the last ``r`` batches before them. So every rank takes as many
    steps (no rank waits in an all-reduce the others never reach) and each pair is trained on once."""
    if len(batches) < world:
        raise ConfigError(f"an epoch has {len(batches)} batch(es) for {world} processes; use fewer processes or "
                          "smaller batches (train.batch_tokens)")
    extra = len(batches) % world
    if not extra:
        return batches
    kept, tail = batches[:-extra], batches[-extra:]
    for k, batch in enumerate(tail):
        kept[-1 - k] = kept[-1 - k] + batch
    return kept


def shard(batches: Sequence[T], rank: int, world: int) -> list[T]:
    """This rank's batches: every ``world``-th from ``rank`` (global batch ``i`` goes to rank ``i % world``)."""
    return list(batches[rank::world])


def check_same(what: str, value: Any) -> None:
    """Refuse to go on when this rank's ``value`` (plain data) differs from rank 0's: processes that disagree
    on, say, an epoch's batches would take different numbers of steps and wait forever in a collective."""
    if world_size() == 1:
        return
    mine = hashlib.sha256(repr(value).encode()).hexdigest()
    if broadcast_object(mine) != mine:
        raise ConfigError(f"process {rank()}'s {what} differ from process 0's; every process must read the same "
                          "data with the same settings")


def sum_int(value: int, device: torch.device) -> int:
    """``value`` summed over all ranks."""
    if world_size() == 1:
        return value
    total = torch.tensor(value, dtype=torch.long, device=device)
    dist.all_reduce(total)
    return int(total)


def sum_tensor(value: torch.Tensor) -> torch.Tensor:
    """``value`` summed over all ranks (a new tensor); a NaN or inf on any rank reaches every rank."""
    if world_size() == 1:
        return value
    total = value.clone()
    dist.all_reduce(total)
    return total


def broadcast_float(value: float, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank (its clock: every rank stops and schedules by the same time)."""
    if world_size() == 1:
        return value
    tensor = torch.tensor(value, dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor)


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` (picklable plain data) on every rank."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_object(value: Any) -> list[Any] | None:
    """Every rank's ``value`` (picklable plain data) on rank 0, in rank order; None on the other ranks."""
    if world_size() == 1:
        return [value]
    out: list[Any] | None = [None] * world_size() if rank() == 0 else None
    dist.gather_object(value, out, dst=0)
    return out


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
