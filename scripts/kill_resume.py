"""Kill -9 at random moments: the default recipe, scaled down, killed N times and resumed each time, must end
bitwise equal to an uninterrupted run and lose at most ``train.save_every_steps`` steps at each kill.

The recipe is the default one (subword sampling on) on a subset of Multi30k with the small model. Half of the
kills land at a random moment, half while a checkpoint is being written. After each kill the last step the
killed process logged and the step in last.pt give the work lost.

- A random kill has a target step, drawn uniformly over the run (the N / 2 targets in increasing order, so the
  kills spread over every epoch, validation and save of the run): the process is killed a random moment within
  two steps' time (of the uninterrupted run) after it logs that step, or its first step when it resumes past
  it. It lands in a step, a checkpoint write, a validation or an epoch change.
- A kill during a write lands inside the first checkpoint write of new progress (a step past last.pt's, not the
  rewrite of last.pt a resume makes before its first step), after a random number of its bytes, from 0 to the
  checkpoint's size. Watching for the temporary file from outside can miss every write of a process on a busy
  machine (a write takes some 30 ms, and a niced watcher may wait longer for a core), so the process is started
  with a hook (:data:`HOOK`) that sends the SIGKILL to itself at that byte: to the process and its files the
  same as a SIGKILL from outside at that moment.

A kill during a write leaves last.pt where it was, so only the random kills move the run on. If the run still
finishes before the N-th kill, the summary says after how many.

    python scripts/kill_resume.py --kills 20 --steps 150 --save-every 10 --lines 2000   # docs/reliability.md
    python scripts/kill_resume.py --kills 4 --lines 600 --steps 30 --save-every 4       # tests/test_kill_resume.py

Prints one line per kill and a summary; exits 1 if the run does not match or a kill lost too much.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from seq2seq.checkpoint import load_checkpoint
from seq2seq.errors import CheckpointError
from seq2seq.files import read_lines

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"
STEP = re.compile(r"step (\d+) epoch \d+: loss")


HOOK = """
import os, signal, sys
import seq2seq.checkpoint as checkpoint
from seq2seq.files import atomic_write

start, limit = int(os.environ["KILL_PAST_STEP"]), int(os.environ["KILL_AT_BYTE"])
save = checkpoint.save_checkpoint

class Tap:  # a file that SIGKILLs its process once `limit` bytes were written into it
    def __init__(self, f):
        self.f, self.written = f, 0
    def write(self, data):
        data = memoryview(data).cast("B")
        n = self.f.write(data[:max(0, limit - self.written)] if self.written + len(data) >= limit else data)
        self.written += len(data)
        if self.written >= limit:
            self.f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return n
    def __getattr__(self, name):
        return getattr(self.f, name)

def killing_write(path, write):
    def written(f):
        write(Tap(f))
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # the whole checkpoint written, not yet renamed
    atomic_write(path, written)

def save_checkpoint(path, payload):
    if payload.get("progress", {}).get("step", 0) > start:
        checkpoint.atomic_write = killing_write
    save(path, payload)

checkpoint.save_checkpoint = save_checkpoint  # before the trainer imports it
sys.argv[0] = "seq2seq-train"
from seq2seq.cli.main import train
sys.exit(train())
"""


def subset(data: Path, lines: int, source: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", lines), ("val", max(20, lines // 20))):
        for lang in ("en", "de"):
            (data / f"{split}.{lang}").write_text("\n".join(read_lines(source / f"{split}.{lang}.gz")[:n]) + "\n")


TRAIN = str(Path(sys.executable).with_name("seq2seq-train"))


def command(work: Path, run: str, args: argparse.Namespace) -> list[str]:
    """seq2seq-train's arguments."""
    return ["model=small", "data.vocab_size=800",
            f"data.dir={work / 'data'}", f"data.cache_dir={work / 'cache'}", "train.max_minutes=null",
            f"train.max_steps={args.steps}", f"train.save_every_steps={args.save_every}",
            f"train.valid_every_steps={args.steps // 2}", "train.log_every_steps=1", "decode=greedy", "threads=1",
            f"seed={args.seed}", f"hydra.run.dir={work / run}"]


def saved_step(run: Path) -> int:
    try:
        return load_checkpoint(run / "last.pt")["progress"]["step"]
    except CheckpointError:
        return 0  # killed before the first save: nothing was saved, nothing is lost but those steps


def finished(run: Path) -> bool:
    return (run / "last.pt").exists() and load_checkpoint(run / "last.pt")["progress"]["finished"]


def logged_step(run: Path) -> int:
    log = run / "train.log"
    steps = [int(m) for m in STEP.findall(log.read_text())] if log.exists() else []
    return max(steps, default=0)


def reference(cmd: list[str], run: Path) -> tuple[float, float]:
    """Run ``cmd`` uninterrupted; returns its wall time to the first logged step (the startup) and in all."""
    run.mkdir(parents=True, exist_ok=True)
    start, first = time.monotonic(), None
    with open(run.parent / "ref.stderr", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        while proc.poll() is None:
            if first is None and logged_step(run) > 0:
                first = time.monotonic() - start
            time.sleep(0.05)
    if proc.returncode != 0:
        sys.exit(f"error: the uninterrupted run failed:\n{(run.parent / 'ref.stderr').read_text()[-2000:]}")
    span = time.monotonic() - start
    return (first if first is not None else span), span


def own_steps(run: Path, offset: int) -> list[int]:
    """The steps logged in train.log past byte ``offset`` (by the process started when it had that size)."""
    try:
        with open(run / "train.log", "rb") as f:
            f.seek(offset)
            return [int(m) for m in STEP.findall(f.read().decode("utf-8", "replace"))]
    except FileNotFoundError:
        return []


def kill_once(args: list[str], run: Path, rng: random.Random, target: float | None, step_time: float,
              span: float, size: int) -> tuple[str, int | None, int]:
    """Start seq2seq-train with ``args`` and SIGKILL it: ``target`` None, inside its first checkpoint write of a
    step past last.pt's, after a random number of bytes up to ``size``; else a random moment within two steps'
    time after it logged step ``target`` (or its first step, if it starts past it). Returns the moment, the last
    step the process logged (None: none) and the steps lost (that step minus last.pt's)."""
    offset = (run / "train.log").stat().st_size if (run / "train.log").exists() else 0
    before = set(run.glob(".*.pt.*.tmp"))  # left by the last kill; the new process removes them
    if target is None:
        at_byte = rng.randrange(size + 1)
        env = {**os.environ, "KILL_PAST_STEP": str(saved_step(run)), "KILL_AT_BYTE": str(at_byte)}
        proc = subprocess.Popen([sys.executable, "-c", HOOK, *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        proc.wait()
        if proc.returncode != -signal.SIGKILL:
            return "finished first", None, 0
        torn = sorted(f"{p.name}, {p.stat().st_size} bytes" for p in set(run.glob(".*.pt.*.tmp")) - before)
        what = f"during a write (at byte {at_byte} of about {size}: {'; '.join(torn) or 'no temporary file'})"
    else:
        proc = subprocess.Popen([TRAIN, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline, fire, what = time.monotonic() + 3 * span, None, f"no step {target:.0f} within {3 * span:.0f} s"
        while proc.poll() is None and time.monotonic() < deadline:
            steps = own_steps(run, offset)
            if fire is None and steps and steps[-1] >= target:
                delay = rng.uniform(0, 2 * step_time)
                fire = time.monotonic() + delay
                what = f"random ({delay:.2f} s after step {steps[-1]}, target {target:.1f})"
            elif fire is not None and time.monotonic() >= fire:
                break
            time.sleep(0.01)
        if proc.poll() is not None:
            return "finished first", None, 0
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    steps = own_steps(run, offset)
    return what, steps[-1] if steps else None, (steps[-1] - saved_step(run)) if steps else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--lines", type=int, default=3000, help="Multi30k training pairs used")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--save-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, default=MULTI30K)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "kill_resume")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    subset(args.work / "data", args.lines, args.data)
    startup, span = reference([TRAIN, *command(args.work, "ref", args)], args.work / "ref")
    size = (args.work / "ref" / "last.pt").stat().st_size
    step_time = (span - startup) / args.steps
    rng, run, worst, results = random.Random(args.seed), args.work / "killed", 0, []
    targets = sorted(rng.uniform(0, args.steps) for _ in range((args.kills + 1) // 2))
    print(f"uninterrupted run: {span:.1f} s, its first step after {startup:.1f} s, {step_time:.2f} s a step; random "
          f"kills after steps {', '.join(f'{t:.1f}' for t in targets)}", flush=True)
    for k in range(args.kills):
        if finished(run):
            break
        resume = ["resume=true"] if (run / "last.pt").exists() else []
        target = targets[k // 2] if k % 2 == 0 else None
        what, step, lost = kill_once(command(args.work, "killed", args) + resume, run, rng, target, step_time, span,
                                     size)
        worst = max(worst, lost)
        results.append(what)
        where = "before its first step" if step is None else f"at step {step}"
        print(f"kill {k + 1}: {what}, the process {where}, last.pt at step {saved_step(run)}, lost {lost}", flush=True)
    if not finished(run):
        final = subprocess.run([TRAIN, *command(args.work, "killed", args), "resume=true"], capture_output=True,
                               text=True)
        if final.returncode != 0:
            sys.exit(f"error: the last resume failed:\n{final.stderr[-2000:]}")
    ref, got = load_checkpoint(args.work / "ref" / "last.pt"), load_checkpoint(run / "last.pt")
    same = ref["model"].keys() == got["model"].keys() and all(torch.equal(v, got["model"][k])
                                                              for k, v in ref["model"].items())
    same_log = (args.work / "ref" / "metrics.jsonl").read_text() == (run / "metrics.jsonl").read_text()
    kills = sum(kind != "finished first" for kind in results)
    early = f"; the run finished before kill {kills + 1}" if kills < args.kills else ""
    writes = sum(what.startswith("during a write") for what in results)
    print(f"{kills} kills ({writes} during a checkpoint write{early}), most steps lost at one "
          f"kill: {worst} (train.save_every_steps={args.save_every}); weights bitwise equal to the uninterrupted "
          f"run: {same}; metrics.jsonl equal: {same_log}")
    if not (same and same_log and worst <= args.save_every):
        sys.exit(1)


if __name__ == "__main__":
    main()
