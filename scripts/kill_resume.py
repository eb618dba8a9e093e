"""Kill -9 at random moments: the default recipe, scaled down, killed N times and resumed each time, must end
bitwise equal to an uninterrupted run and lose at most ``train.save_every_steps`` steps at each kill.

The recipe is the default one (subword sampling on) on a subset of Multi30k with the small model. Half of the
kills land at a random moment, half while a checkpoint is being written (the moment its temporary file
appears). After each kill the last logged step and the step in last.pt give the work lost.

A random moment is drawn between the process's start and its startup (the uninterrupted run's time to its first
step) plus twice its share of the training, 2 / N of the uninterrupted run's training time: so N kills fit into
the run (a kill during a write leaves last.pt where it was, so only the random ones move the run on), and a kill
can land in the startup as well as in a step, a validation or a save. The run may still finish before the N-th
kill; then it reports how many it took.

    python scripts/kill_resume.py --kills 20                  # the figure in docs/reliability.md
    python scripts/kill_resume.py --kills 3 --lines 600       # about two minutes (tests/test_kill_resume.py)

Prints one line per kill and a summary; exits 1 if the run does not match or a kill lost too much.
"""

from __future__ import annotations

import argparse
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


def subset(data: Path, lines: int, source: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", lines), ("val", max(20, lines // 20))):
        for lang in ("en", "de"):
            (data / f"{split}.{lang}").write_text("\n".join(read_lines(source / f"{split}.{lang}.gz")[:n]) + "\n")


def command(work: Path, run: str, args: argparse.Namespace) -> list[str]:
    return [str(Path(sys.executable).with_name("seq2seq-train")), "model=small", "data.vocab_size=800",
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


def kill_once(cmd: list[str], run: Path, rng: random.Random, during_write: bool, window: float,
              span: float) -> tuple[str, int]:
    """Start ``cmd``, SIGKILL it (at a random moment within ``window`` seconds of its start, or when a checkpoint
    write starts); returns the moment's kind and the steps lost (those logged minus those in last.pt)."""
    stale = set(run.glob(".*.pt.*.tmp"))  # left by the last kill; the new process removes them
    moment = rng.uniform(0, window)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + (span * 3 if during_write else moment)
    kind = f"no write within {span * 3:.0f} s" if during_write else f"random ({moment:.1f} s after the start)"
    while proc.poll() is None and time.monotonic() < deadline:
        if during_write and set(run.glob(".*.pt.*.tmp")) - stale:
            kind = "during a write"
            break
        time.sleep(0.005 if during_write else 0.05)
    if proc.poll() is not None:
        return "finished first", 0
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return kind, logged_step(run) - saved_step(run)


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
    startup, span = reference(command(args.work, "ref", args), args.work / "ref")
    window = startup + 2 * (span - startup) / max(1, args.kills)
    print(f"uninterrupted run: {span:.1f} s, its first step after {startup:.1f} s; random kills within {window:.1f} s "
          "of a start", flush=True)
    rng, run, worst, results = random.Random(args.seed), args.work / "killed", 0, []
    for k in range(args.kills):
        if finished(run):
            break
        resume = ["resume=true"] if (run / "last.pt").exists() else []
        kind, lost = kill_once(command(args.work, "killed", args) + resume, run, rng, k % 2 == 1, window, span)
        worst = max(worst, lost)
        results.append(kind)
        print(f"kill {k + 1}: {kind}, at step {logged_step(run)}, last.pt at step {saved_step(run)}, lost {lost}",
              flush=True)
    if not finished(run):
        final = subprocess.run(command(args.work, "killed", args) + ["resume=true"], capture_output=True, text=True)
        if final.returncode != 0:
            sys.exit(f"error: the last resume failed:\n{final.stderr[-2000:]}")
    ref, got = load_checkpoint(args.work / "ref" / "last.pt"), load_checkpoint(run / "last.pt")
    same = ref["model"].keys() == got["model"].keys() and all(torch.equal(v, got["model"][k])
                                                              for k, v in ref["model"].items())
    same_log = (args.work / "ref" / "metrics.jsonl").read_text() == (run / "metrics.jsonl").read_text()
    kills = sum(kind != "finished first" for kind in results)
    early = f"; the run finished before kill {kills + 1}" if kills < args.kills else ""
    print(f"{kills} kills ({results.count('during a write')} during a checkpoint write{early}), most steps lost at one "
          f"kill: {worst} (train.save_every_steps={args.save_every}); weights bitwise equal to the uninterrupted "
          f"run: {same}; metrics.jsonl equal: {same_log}")
    if not (same and same_log and worst <= args.save_every):
        sys.exit(1)


if __name__ == "__main__":
    main()
