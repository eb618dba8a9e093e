"""int8 against fp32 decoding on the CPU: sentences/s and BLEU, alternated fp32 / int8 / fp32 / int8.

    python scripts/int8_benchmark.py runs/x/best.pt                    # the checkpoint's test split, 1 thread
    python scripts/int8_benchmark.py runs/x/best.pt --split val --rounds 3 --threads 2

Both models are loaded once; each round translates the whole split with fp32 and then int8, for beam 5
(the default decode settings) and greedy. The 1-minute load average is printed before and after:
timings on a shared machine are only comparable within a run. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from pathlib import Path

import torch

from seq2seq.config import DecodeConfig
from seq2seq.cpu import load_average
from seq2seq.data.corpus import split_lines
from seq2seq.inference.bleu import corpus_scores
from seq2seq.inference.translator import Translator


def load() -> str:
    return f"1-minute load average {load_average(math.nan):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--split", default=None, help="default: the checkpoint's data.test_split")
    parser.add_argument("--data-dir", default=None, help="default: the checkpoint's data.dir")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    parser.add_argument("--out", default=None, help="write the hypotheses to OUT/hyp.{beam5,greedy}.{fp32,int8}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {"fp32": Translator.from_checkpoint(args.checkpoint, device="cpu"),
              "int8": Translator.from_checkpoint(args.checkpoint, device="cpu", quantize="int8")}
    data = models["fp32"].config.data
    split = args.split or data.test_split
    sources, refs = split_lines(data, split, args.limit, directory=args.data_dir)
    print(f"{args.checkpoint}: {split}, {len(sources)} sentences, {args.threads} thread(s); {load()}")
    settings = {"beam 5": DecodeConfig(), "greedy": dataclasses.replace(DecodeConfig(), beam_size=1, alpha=0.0)}
    rates: dict[tuple[str, str], list[float]] = {}
    bleu: dict[tuple[str, str], tuple[float, float]] = {}
    for name, decode in settings.items():
        for _ in range(args.rounds):
            for kind, translator in models.items():
                start = time.perf_counter()
                hyps = [t.text for t in translator.translations(sources, decode)]
                rates.setdefault((name, kind), []).append(len(sources) / (time.perf_counter() - start))
                bleu[name, kind] = (corpus_scores(hyps, refs).bleu, corpus_scores(hyps, refs, lowercase=True).bleu)
                if args.out:
                    Path(args.out, f"hyp.{name.replace(' ', '')}.{kind}").write_text(
                        "".join(h + "\n" for h in hyps), encoding="utf-8")
                print(f"  {name} {kind}: {rates[name, kind][-1]:.1f} sentences/s; {load()}", flush=True)
    print(f"\n{load()}\n")
    print("| decoding | model | sentences/s (each round) | median | int8 / fp32 (per round) | BLEU | BLEU lc |")
    print("|---|---|---|---|---|---|---|")
    for name in settings:
        for kind in models:
            r = rates[name, kind]
            ratio = [i / f for i, f in zip(rates[name, "int8"], rates[name, "fp32"], strict=True)]
            speed = ", ".join(f"{x:.2f}x" for x in ratio) if kind == "int8" else ""
            print(f"| {name} | {kind} | {', '.join(f'{x:.1f}' for x in r)} | {statistics.median(r):.1f} | {speed} "
                  f"| {bleu[name, kind][0]:.2f} | {bleu[name, kind][1]:.2f} |")


if __name__ == "__main__":
    main()
