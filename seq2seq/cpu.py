"""Process-wide CPU settings: the torch thread count and glibc malloc's handling of large blocks.

glibc serves every allocation over 32 MiB with a fresh ``mmap`` and unmaps it on free, so each
training step page-faults its (N, V) logits, log-probs and their gradients in again: on this
machine that made ``log_softmax`` 2.5x and a fill 18x slower than on reused memory. Serving them
from the heap, and keeping freed memory for the next step, removes those page faults. The price: a
process keeps its peak memory until it exits (training and decoding peak at every step anyway).
"""

from __future__ import annotations

import ctypes
import logging
import platform

import torch

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4  # glibc's mallopt() parameters (malloc.h)


def setup(threads: int | None = None) -> None:
    """Use ``threads`` torch threads (None: torch's default) and keep large freed blocks for reuse."""
    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory()


def keep_freed_memory() -> bool:
    """Ask glibc for heap (not mmap) blocks and never to trim them; False where that is not glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False  # macOS, Windows, musl: other allocators, other habits
    try:
        mallopt = ctypes.CDLL(None).mallopt  # this process's own glibc
    except (OSError, AttributeError):
        return False
    # no mmap for large blocks, never give the heap back, grow it 64 MiB at a time
    done = mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) and mallopt(M_TOP_PAD, 64 << 20)
    log.debug("glibc malloc: large blocks from the heap, kept for reuse: %s", "yes" if done else "refused")
    return bool(done)
