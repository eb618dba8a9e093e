"""Process-wide CPU settings: OpenMP's waiting, the torch thread count and glibc malloc's large blocks.

**OpenMP waiting.** torch runs its intra-op parallel regions on GNU OpenMP, whose threads spin for
about 300,000 iterations at every barrier before they sleep. When another process holds one of the
cores, the thread that should finish the region is descheduled while its partner spins for it: two
threads beside one busy process trained the toy model 3.4x slower than one thread
(``scripts/thread_contention.py`` measures it). ``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep
at once, so a loaded machine costs in proportion to the load, but on an idle machine it halved the toy
model's speed with 2 threads (waking a thread costs more than a short spin). A short spin,
``GOMP_SPINCOUNT=1000``, keeps the idle speed and softens the collapse without removing it. So
:func:`openmp_defaults` picks by the load when the process starts: passive waiting when other work keeps
a core busy (``BUSY_LOAD`` cores or more, :func:`busy_cores`), the short spin otherwise. The load is what
the CPUs do in the quarter second before the start, not the 1-minute load average: that one still counts
work that has just ended (``make train``'s pip install, a test run), and a 60-minute run started after it
waited passively on an idle machine, 10-13% slower than with the short spin (docs/threads.md). libgomp
reads these once, when torch is imported, so the console scripts call it first thing; a value the user set
(``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``) is left alone.

**malloc.** glibc serves every allocation over 32 MiB with a fresh ``mmap`` and unmaps it on free, so
each training step page-faults its (N, V) logits, log-probs and their gradients in again: on this
machine that made ``log_softmax`` 2.5x and a fill 18x slower than on reused memory. Serving them from
the heap, and keeping freed memory for the next step, removes those page faults. The price: a process
keeps its peak memory until it exits (training and decoding peak at every step anyway).

This module imports torch only inside its functions, so importing it does not start OpenMP.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import time
from collections.abc import MutableMapping

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4  # glibc's mallopt() parameters (malloc.h)
BUSY_LOAD = 0.75  # busy cores (other processes) from which the machine counts as busy (one busy process gives ~1)
WHEN_BUSY = {"OMP_WAIT_POLICY": "PASSIVE"}  # waiting threads sleep at once (see the module docstring)
WHEN_IDLE = {"GOMP_SPINCOUNT": "1000"}  # a short spin: full speed alone, a milder collapse if load comes later
OPENMP_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")  # logged at start
_set_by_us: set[str] = set()
_busy_at_start: list[float] = []  # what openmp_defaults() measured in this process, for the log


def openmp_defaults(environ: MutableMapping[str, str] | None = None, load: float | None = None) -> list[str]:
    """Set :data:`WHEN_BUSY` or :data:`WHEN_IDLE` in ``environ`` (``os.environ``) by ``load``, the cores other
    processes keep busy: by default :func:`busy_cores` measures it now, the CPUs' busy share in /proc/stat over
    a quarter second (so work that has just ended does not count; the 1-minute load average only where there
    is no /proc/stat). Does nothing when the user chose a wait policy or spin count; returns the names it set.
    Only takes effect when called before torch is imported."""
    env = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env:
        return []
    if load is None:
        load = busy_cores()
        if environ is None:
            _busy_at_start.append(load)
    chosen = WHEN_BUSY if load >= BUSY_LOAD else WHEN_IDLE
    env.update(chosen)
    if environ is None:
        _set_by_us.update(chosen)
    return list(chosen)


def busy_fraction(before: str, after: str) -> float:
    """The share of CPU time spent busy between two readings of /proc/stat's first line
    (``cpu user nice system idle iowait irq softirq steal ...``); idle and iowait count as idle."""
    t0, t1 = ([int(x) for x in line.split()[1:9]] for line in (before, after))
    total = sum(t1) - sum(t0)
    idle = (t1[3] + t1[4]) - (t0[3] + t0[4])
    return max(0.0, min(1.0, (total - idle) / total)) if total > 0 else 0.0


def busy_cores(interval: float = 0.25, stat: str = "/proc/stat") -> float:
    """How many cores other processes keep busy now: the machine's busy share over ``interval`` seconds,
    while this process sleeps, times the CPUs /proc/stat lists. Without /proc/stat (macOS, Windows): the
    1-minute load average, or 0."""
    try:
        with open(stat, encoding="ascii") as f:
            lines = f.read().splitlines()
        time.sleep(interval)
        with open(stat, encoding="ascii") as f:
            after = f.readline()
        cpus = sum(1 for line in lines if line[:3] == "cpu" and line[3:4].isdigit())  # cpu0, cpu1, ...
        return busy_fraction(lines[0], after) * max(1, cpus)
    except (OSError, ValueError, IndexError):
        return load_average(0.0)


def load_average(missing: float) -> float:
    """The 1-minute load average, or ``missing`` where the platform has none (Windows)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else missing


def describe_openmp(environ: MutableMapping[str, str] | None = None) -> str:
    """``OMP_WAIT_POLICY=PASSIVE (seq2seq's default), GOMP_SPINCOUNT unset, ...`` for the start of a log."""
    env = os.environ if environ is None else environ
    parts = []
    for key in OPENMP_KEYS:
        value = env.get(key)
        origin = " (seq2seq's default)" if key in _set_by_us and environ is None else ""
        parts.append(f"{key}={value}{origin}" if value is not None else f"{key} unset")
    return ", ".join(parts)


def setup(threads: int | None = None) -> int:
    """Use ``threads`` torch threads (None: torch's default), keep large freed blocks for reuse, and log
    the thread count, the OpenMP settings and the load; returns the thread count."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory()
    count = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load = load_average(float("nan"))
    busy = f", {_busy_at_start[0]:.1f} cores busy before the start" if _busy_at_start else ""
    log.info("CPU: %d torch thread%s (%s), %d core%s, load average %.1f%s; OpenMP: %s", count,
             "" if count == 1 else "s", f"threads={threads}" if threads else "torch's default", cores,
             "" if cores == 1 else "s", load, busy, describe_openmp())
    return count


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
