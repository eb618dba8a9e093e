"""The attention study's command line (scripts/compare_attention.py; ``python -m seq2seq.cli.study``): train
the runs, two at a time, summarize each, time every variant, then build the report. The study itself, its
recipe and its report, is seq2seq/report/attention_study.py. What this module prints is its progress."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from seq2seq.device import cpu_name
from seq2seq.report import attention_study
from seq2seq.report.attention_study import (
    ROWS,
    SCRIPT,
    STUDY,
    VARIANTS,
    overrides,
    report,
    speed_of,
    summarize,
)

BENCHMARK = Path(__file__).resolve().parents[2] / "scripts" / "benchmark.py"  # --speed: the source checkout's


def train(name: str, seed: int, runs: Path, extra: list[str], out: Path) -> Path:
    """Train (or continue) one run; returns its directory."""
    run = runs / f"{name}_s{seed}"
    exe = str(Path(sys.executable).with_name("seq2seq-train"))
    args = [exe, *overrides(name, speed_of(out)), f"seed={seed}", f"hydra.run.dir={run}", *extra]
    if (run / "last.pt").exists():
        args.append("resume=true")
    print(f"== {name} seed {seed}: {' '.join(args[1:])}", flush=True)
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0 and "finished run" not in out.stderr:
        raise RuntimeError(f"{name} seed {seed} failed:\n{out.stderr[-3000:]}")
    return run


def seeds_found(out: Path, asked: list[int]) -> list[int]:
    """The seeds a report covers: those asked for and every seed with a summary in {out}/runs, so that running
    one seed does not rebuild the report without the others."""
    found = {int(tail) for p in (out / "runs").glob("*_s*.json") if (tail := p.stem.rpartition("_s")[2]).isdigit()}
    return sorted(found | set(asked))


def run_one(name: str, seed: int, out: Path, runs: Path, extra: list[str]) -> None:
    result = out / "runs" / f"{name}_s{seed}.json"
    if result.exists():
        return
    run = train(name, seed, runs, extra, out)
    subprocess.run([sys.executable, "-m", "seq2seq.cli.study", "--summarize", str(run), str(result)],
                   check=True)
    print(f"== {name} seed {seed}: done, {result}", flush=True)


def measure_speed(out: Path, variants: list[str], extra: list[str], steps: int = 60) -> dict:
    """Training target tokens/s of each variant at the study's size on one thread (scripts/benchmark.py
    --train-only: the same first batches for every variant), one after another, into {out}/speed.json with
    the recipe and the CPU they were measured with. Variants already measured with this recipe on this CPU
    are kept; another recipe or CPU starts again (speeds from two machines do not compare). Run nothing else
    meanwhile."""
    if not BENCHMARK.is_file():
        raise SystemExit(f"--speed runs {BENCHMARK}, which is not there: run the study from a source checkout")
    path = out / "speed.json"
    recipe = [o for o in STUDY if not o.startswith("threads=")] + extra  # benchmark.py sets the threads itself
    speed = speed_of(out)
    if speed.get("recipe") != recipe or speed.get("cpu") != cpu_name():
        speed = {"recipe": recipe, "cpu": cpu_name(), "tokens_per_s": {}}
    for name in variants:
        if name in speed["tokens_per_s"]:
            continue
        cmd = [sys.executable, str(BENCHMARK), "--train-only", "--threads", "1", "--precisions", "fp32",
               "--steps", str(steps), "--", *recipe, *VARIANTS[name]]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"timing {name} failed: scripts/benchmark.py {' '.join(cmd[2:])} said\n"
                             f"{done.stderr.strip()[-2000:]}")
        tokens_per_s = json.loads(done.stdout.strip().splitlines()[-1])["train_fp32_tgt_tokens_per_s"]
        speed["tokens_per_s"][name] = round(tokens_per_s, 1)
        path.write_text(json.dumps(speed, indent=1) + "\n", encoding="utf-8")
        print(f"== {name}: {tokens_per_s:.0f} target tokens/s (training, one thread)", flush=True)
    return speed


def main() -> None:
    parser = argparse.ArgumentParser(prog=SCRIPT, description=attention_study.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/attention_study", help="results (kept in git)")
    parser.add_argument("--runs", default="runs/attention_study", help="run directories (checkpoints)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=ROWS,
                        help="default: every variant at equal epochs; the equal-time rows (*_time) are asked for by "
                             "name, after --speed")
    parser.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (each uses one thread)")
    parser.add_argument("--report", action="store_true", help="only rebuild the report")
    parser.add_argument("--speed", action="store_true",
                        help="time each variant's training (one thread, quiet machine) into speed.json, then report")
    parser.add_argument("--summarize", nargs=2, metavar=("RUN", "JSON"), help=argparse.SUPPRESS)
    parser.add_argument("extra", nargs="*", help="more seq2seq-train overrides, after --")
    args = parser.parse_args()
    if args.summarize:
        return summarize(Path(args.summarize[0]), Path(args.summarize[1]))
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    if args.speed:
        measure_speed(out, [v for v in args.variants if v in VARIANTS], args.extra)
    elif not args.report:
        todo = [(n, s) for s in args.seeds for n in args.variants]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {(n, s): pool.submit(run_one, n, s, out, Path(args.runs), args.extra) for n, s in todo}
            for (n, s), future in futures.items():
                try:
                    future.result()
                except Exception as e:  # the others go on; the report shows what finished
                    print(f"== {n} seed {s}: FAILED: {e}", flush=True)
                    failed.append(f"{n} seed {s}")
    try:
        print(report(out, seeds_found(out, args.seeds), args.extra) and (out / "results.md").read_text())
    finally:  # also when the report itself stops (no finished run, a damaged summary)
        if failed:
            print(f"{len(failed)} run(s) failed ({', '.join(failed)}); their errors are above. Fix the cause and "
                  "run the same command again: it redoes only what is missing", file=sys.stderr)
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
