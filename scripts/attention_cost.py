"""The cost of attention as the source grows: training and decoding time per sentence, and peak memory, for
every attention form, the Transformer and the hybrid, from 10 to 400 source subwords; growth exponents fitted.

    python scripts/attention_cost.py                       # every form, the default sizes; about 10 minutes
    python scripts/attention_cost.py --forms bahdanau transformer --lengths 10 50 200 --out /tmp/cost
    python scripts/attention_cost.py --quick               # two forms, three short lengths (the test)

What is measured, at every source length S (the target length is held at --tgt-len, so that what grows is
what one target step attends over):

- **training**: a teacher-forced forward and backward pass over a batch of --batch sentences, per sentence;
- **decoding**: the encoder once and --tgt-len greedy steps (each step the decoder attends over all S
  positions; no early stop, so every length decodes the same number of steps), per sentence;
- **memory**: the peak resident memory of the process above what it held before the first length (each form
  and phase runs in its own process, lengths ascending, so the peak at S is the peak so far).

Input is synthetic (random subword ids): Multi30k's captions run out long before 400 subwords, and nothing
these networks compute depends on which ids they read. The exponent k of time ~ S^k is the least-squares
slope of log time against log S over the lengths from --fit-from on (short sources are dominated by the
work that does not grow with S: the target side, the vocabulary projection).

Writes {out}/attention_cost.json and {out}/attention_cost.png and prints a Markdown table. Run nothing else
while it measures.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from benchmark import run_phase  # scripts/benchmark.py: a phase in its own process, its death reported

FORMS = {  # name -> ModelConfig settings (the default sizes: seq2seq/config.py, ModelConfig)
    "bahdanau": {"attention": "bahdanau"},
    "luong_dot": {"attention": "luong_dot"},
    "luong_general": {"attention": "luong_general"},
    "luong_concat": {"attention": "luong_concat"},
    "luong_general local-p": {"attention": "luong_general", "attention_window": 10},
    "scaled_dot": {"attention": "scaled_dot"},
    "multihead": {"attention": "multihead"},
    "bahdanau + coverage": {"attention": "bahdanau", "coverage": True},
    "hybrid (Transformer encoder, bahdanau)": {"attention": "bahdanau", "encoder": "transformer", "enc_layers": 4},
    "transformer": {"attention": "multihead", "encoder": "transformer", "decoder": "transformer", "enc_layers": 4,
                    "dec_layers": 4, "dropout": 0.1, "tie_embeddings": True, "share_embeddings": True},
}
LENGTHS = (10, 25, 50, 100, 200, 400)
VOCAB = 8000


def timed(fn, min_seconds: float) -> float:
    """Median seconds of one call of ``fn`` over 3 rounds, each repeating it for at least ``min_seconds``."""
    fn()  # warm-up
    rounds = []
    for _ in range(3):
        repeats, start = 0, time.perf_counter()
        while repeats == 0 or time.perf_counter() - start < min_seconds:
            fn()
            repeats += 1
        rounds.append((time.perf_counter() - start) / repeats)
    return statistics.median(rounds)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(form: str, phase: str, lengths: list[int], batch: int, tgt_len: int, threads: int,
            min_seconds: float, queue: mp.Queue) -> None:
    """One form and phase in this process: [(S, seconds per sentence, peak MiB above the start)]."""
    from seq2seq import cpu
    from seq2seq.config import ModelConfig
    from seq2seq.nn.model import Seq2Seq

    cpu.setup(threads)
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(**FORMS[form]), VOCAB, VOCAB)
    tgt = torch.randint(4, VOCAB, (batch, tgt_len))
    points = []
    base = None
    for s in lengths:
        src, lens = torch.randint(4, VOCAB, (batch, s)), torch.full((batch,), s)
        if phase == "train":
            model.train()

            def step(src=src, lens=lens) -> None:
                logits, _ = model(src, lens, tgt)
                logits.float().log_softmax(-1).mean().backward()
                model.zero_grad(set_to_none=True)
        else:
            model.eval()

            @torch.no_grad()
            def step(src=src, lens=lens) -> None:
                enc = model.encode(src, lens)
                state, prev = model.init_state(enc), torch.full((batch,), 2)
                for _ in range(tgt_len):
                    log_probs, _, state = model.decode_step(prev, enc, state)
                    prev = log_probs.argmax(-1)
        if base is None:
            step()
            base = rss_mib()  # the model, its gradients or caches at the shortest length
        seconds = timed(step, min_seconds)
        points.append((s, seconds / batch, max(0.0, rss_mib() - base)))
    queue.put(points)


def exponent(points: list, fit_from: int, column: int = 1) -> float:
    """The least-squares slope of log(value) against log(S) over S >= fit_from."""
    xs = [math.log(p[0]) for p in points if p[0] >= fit_from]
    ys = [math.log(p[column]) for p in points if p[0] >= fit_from]
    if len(xs) < 2:
        return float("nan")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    for ax, (phase, column, label) in zip(axes, [("train", 1, "training ms per sentence"),
                                                 ("decode", 1, "decoding ms per sentence"),
                                                 ("train", 2, "training peak memory above S=10 (MiB)")],
                                          strict=True):
        for form, phases in results.items():
            pts = phases[phase]
            scale = 1000 if column == 1 else 1
            ax.plot([p[0] for p in pts], [max(p[column] * scale, 1e-3) for p in pts], marker="o", label=form,
                    linestyle="--" if "ransformer" in form else "-")
        ax.set(xscale="log", yscale="log", xlabel="source subwords S", ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forms", nargs="+", choices=list(FORMS), default=list(FORMS), metavar="FORM",
                        help=f"default: all of {', '.join(FORMS)}")
    parser.add_argument("--lengths", nargs="+", type=int, default=list(LENGTHS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tgt-len", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-seconds", type=float, default=0.3, help="each timing round lasts at least this")
    parser.add_argument("--fit-from", type=int, default=100, help="fit the exponent over S >= this")
    parser.add_argument("--out", default="docs", help="where attention_cost.json and .png go")
    parser.add_argument("--quick", action="store_true", help="two forms, lengths 10 20 40, short rounds")
    args = parser.parse_args()
    if args.quick:
        args.forms, args.lengths, args.min_seconds, args.fit_from = ["luong_dot", "transformer"], [10, 20, 40], 0.02, 10
        args.batch, args.tgt_len = 4, 5
    if any(s < 1 for s in args.lengths):
        parser.error("--lengths must be positive")
    args.lengths = sorted(set(args.lengths))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for form in args.forms:
        results[form] = {phase: run_phase(measure, form, phase, args.lengths, args.batch, args.tgt_len,
                                          args.threads, args.min_seconds) for phase in ("train", "decode")}
        print(f"measured {form}", file=sys.stderr, flush=True)
    head = " | ".join(f"S={s}" for s in args.lengths)
    print(f"\nms per sentence (batch {args.batch}, {args.tgt_len} target steps, {args.threads} threads); "
          f"k: the exponent of time ~ S^k over S >= {args.fit_from}\n")
    print(f"| form | phase | {head} | k |\n|---|---|{'---:|' * len(args.lengths)}---:|")
    summary = {}
    for form, phases in results.items():
        summary[form] = {}
        for phase, pts in phases.items():
            k = exponent(pts, args.fit_from)
            summary[form][f"{phase}_exponent"] = k
            print(f"| {form} | {phase} | " + " | ".join(f"{1000 * p[1]:.2f}" for p in pts) + f" | {k:.2f} |")
        pts = phases["train"]
        summary[form]["train_memory_exponent"] = exponent([p for p in pts if p[2] > 0], args.fit_from, column=2)
    print(f"\n| form | training peak MiB above S={args.lengths[0]}: {head} |\n|---|{'---:|' * len(args.lengths)}")
    for form, phases in results.items():
        print(f"| {form} | " + " | ".join(f"{p[2]:.0f}" for p in phases["train"]) + " |")
    (out / "attention_cost.json").write_text(json.dumps(
        {"settings": {k: v for k, v in vars(args).items() if k != "out"}, "points": results,
         "summary": summary}, indent=1))
    plot(results, out / "attention_cost.png")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
