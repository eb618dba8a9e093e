"""Several training processes (torchrun): process group, rank and world size, batch shards, collectives.

Without torchrun (``WORLD_SIZE`` unset or 1) every helper is a cheap no-op for a world of one process,
so the single-process path runs no collective at all. Under torchrun the process group is set up from
torchrun's environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``): gloo on the CPU, nccl on GPUs.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from seq2seq.errors import ConfigError

T = TypeVar("T")
log = logging.getLogger(__name__)
TIMEOUT = datetime.timedelta(hours=2)  # other ranks wait while rank 0 validates a large corpus


def env_world_size() -> int:
    """The world size torchrun asks for (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``; under torchrun ``cuda`` means cuda:LOCAL_RANK."""
    if name == "auto":  # a GPU per process, or the CPU for all
        name = "cuda" if torch.cuda.is_available() else "cpu"
        per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # torchrun's processes on this machine
        if name == "cuda" and torch.cuda.device_count() < per_machine:
            log.warning("%d processes on this machine but %d GPU(s): device=auto trains on the CPU; start at most "
                        "%d processes per machine to use the GPUs", per_machine, torch.cuda.device_count(),
                        torch.cuda.device_count())
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device=cuda but no CUDA GPU is available here; use device=cpu or device=auto")
        if env_world_size() <= 1:
            return torch.device("cuda", torch.cuda.current_device())
        if local_rank() >= torch.cuda.device_count():
            raise ConfigError(f"process LOCAL_RANK={local_rank()} needs cuda:{local_rank()} but this machine has "
                              f"{torch.cuda.device_count()} GPU(s); start at most that many processes per "
                              "machine (torchrun --nproc_per_node) or use device=cpu")
        return torch.device("cuda", local_rank())
    return torch.device(name)


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


def usable(n: int, world: int) -> int:
    """How many of an epoch's ``n`` batches are trained on: cut to a multiple of ``world``, so that every
    rank takes as many steps."""
    return n - n % world


def shard(batches: Sequence[T], rank: int, world: int) -> list[T]:
    """This rank's batches: the first ``usable`` ones, every ``world``-th from ``rank``. Global batch ``i``
    goes to rank ``i % world``."""
    return list(batches[rank:usable(len(batches), world):world])


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


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
