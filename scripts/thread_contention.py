"""Training speed alone and beside a busy process, with OpenMP threads spinning (before) or sleeping (after).

    python scripts/thread_contention.py                   # experiment=toy, 80 steps, threads 2 and 1
    python scripts/thread_contention.py --steps 40 --repeats 2 --threads 2
    python scripts/thread_contention.py --after-env GOMP_SPINCOUNT=10000   # try another setting as "after"

Each cell is one short ``seq2seq-train experiment=toy`` run in its own process; the number is the target
tokens/s of its training steps (the log line at the last step; validation excluded). "beside a busy
process" starts ``python3 -c "while True: pass"`` (one core, single-threaded) first and stops it after.

- **before**: GNU OpenMP's own waiting, threads spin about 300,000 times at each barrier before they
  sleep (``GOMP_SPINCOUNT=300000``, libgomp's default when no wait policy is set; a value the user set
  is left alone by seq2seq, so this reproduces the old behaviour with the new code);
- **after**: seq2seq's default (seq2seq/cpu.py), chosen by the load when the run starts: passive waiting on a
  busy machine, a short spin (``GOMP_SPINCOUNT=1000``) on an idle one; ``--after-env`` sets one instead.
  The busy process starts seconds before the run; the default reads the CPUs' busy share in the quarter
  second before the start, so it sees that process and waits passively "beside" it (until the default
  followed the 1-minute load average, which had not risen yet, and picked the short spin there).

Before and after run one right after the other for every cell (in alternating order with ``--repeats``),
so a change in the machine's load hits both. The load average is printed with each row: on a machine that
is not idle, "alone" is not alone. Every run is bounded (``--timeout`` seconds; a run that does not reach
its last step in time shows as nan). Prints a table; measures, asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seq2seq.cpu import load_average
from seq2seq.serving.harness import Lines

RATE = re.compile(r"step (\d+) epoch \d+: loss \S+, (\d+) target tokens/s")
POLICIES = {"before": {"GOMP_SPINCOUNT": "300000"}, "after": {}}


def train_rate(steps: int, threads: int, policy: str, tmp: Path, timeout: float) -> float | None:
    """Target tokens/s of ``steps`` toy training steps, read from the log line at the last step."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(POLICIES[policy])
    exe = str(Path(sys.executable).with_name("seq2seq-train"))
    cmd = [exe, "experiment=toy", "device=cpu", f"threads={threads}", f"train.max_steps={steps}",
           f"train.log_every_steps={steps}", f"data.dir={tmp / 'data'}", f"data.cache_dir={tmp / 'cache'}",
           f"hydra.run.dir={tmp / f'run_{time.monotonic_ns()}'}"]

    def last_step(line: str) -> bool:  # the rate is logged before the final validation, which is not waited for
        match = RATE.search(line)
        return bool(match) and int(match.group(1)) == steps

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = Lines(proc.stderr).wait_for(last_step, timeout)  # type: ignore[arg-type]
    except TimeoutError:
        line = None
    finally:
        proc.kill()
        proc.wait()
    match = RATE.search(line) if line else None
    return float(match.group(2)) if match else None


def busy() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--repeats", type=int, default=1, help="before/after pairs per cell")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per training run at most")
    parser.add_argument("--after-env", nargs="*", default=[], metavar="KEY=VALUE",
                        help="measure these OpenMP settings as 'after' instead of seq2seq's default, "
                             "e.g. GOMP_SPINCOUNT=10000")
    args = parser.parse_args()
    POLICIES["after"] = dict(item.split("=", 1) for item in args.after_env)
    after = POLICIES["after"] or "seq2seq's default (by the load at start)"
    print(f"cores: {os.cpu_count()}; 1-minute load average at start: {load_average(math.nan):.1f}; "
          f"before: {POLICIES['before']}, after: {after}", flush=True)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        train_rate(2, 1, "after", tmp, args.timeout)  # generate the toy data and its SentencePiece model once
        rows = []
        for load in ("alone", "beside 1 busy"):
            for threads in args.threads:
                for repeat in range(args.repeats):
                    other = busy() if load != "alone" else None
                    try:
                        time.sleep(0.5 if other else 0)
                        rate = {}
                        for policy in ("before", "after")[:: 1 if repeat % 2 == 0 else -1]:  # alternate the order
                            rate[policy] = train_rate(args.steps, threads, policy, tmp, args.timeout)
                        before, after = rate["before"], rate["after"]
                    finally:
                        if other:
                            other.kill()
                            other.wait()
                    rows.append((load, threads, before, after, load_average(math.nan)))
                    print(f"  {load}, threads={threads}: before {before}, after {after}", file=sys.stderr, flush=True)
    print(f"\n{'':<14} {'threads':>7} {'before tok/s':>13} {'after tok/s':>12} {'after/before':>13}  load (1 min)")
    for load, threads, before, after, avg in rows:
        ratio = f"{after / before:.2f}" if before and after else "-"
        print(f"{load:<14} {threads:>7} {before or float('nan'):>13.0f} {after or float('nan'):>12.0f} {ratio:>13}"
              f"  {avg:.1f}")


if __name__ == "__main__":
    main()
