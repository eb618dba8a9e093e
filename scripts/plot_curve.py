"""Learning curve: validation BLEU against training wall time, from runs' metrics files.

    python scripts/plot_curve.py runs/m30k_default [more run dirs ...] --out curve.png

Reads {run}/timing.jsonl (wall-clock seconds of each validation) and {run}/metrics.jsonl.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def curve(run: Path) -> tuple[list[float], list[float]]:
    timing = [json.loads(line) for line in (run / "timing.jsonl").read_text().splitlines()]
    return [t["elapsed_s"] / 60 for t in timing], [t["bleu"] for t in timing]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", default="learning_curve.png")
    parser.add_argument("--title", default="validation BLEU (greedy) against training wall time")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in args.runs:
        xs, ys = curve(run)
        ax.plot(xs, ys, marker="o", label=run.name)
        print(f"{run}: " + ", ".join(f"{x:.1f} min: {y:.2f}" for x, y in zip(xs, ys)))
    ax.set_xlabel("wall time (minutes, validation included)")
    ax.set_ylabel("validation BLEU")
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
