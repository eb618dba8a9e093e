"""Subword sampling, seq2seq's sampler (seq2seq/data/sampling.py) against SentencePiece's own: preparation time
(cold, and from the cache a later start reads), one epoch's sampling time, memory, and how alike the draws are,
on a corpus's training split.

    python scripts/sampling_benchmark.py                          # Multi30k en-de, the default settings
    python scripts/sampling_benchmark.py --rounds 3 --alpha 0.4

Run it alone on the machine: the times are wall clock, alternated between the two samplers round by round. The
preparation is cached in a temporary directory, not in data.cache_dir, so the cold figure is always cold.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import sentencepiece as spm

from seq2seq.cli.schemas import compose
from seq2seq.data.corpus import read_parallel
from seq2seq.data.sampling import Sampler
from seq2seq.data.tokenizer import build_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=None, help="default: the config's data.sampling_alpha")
    parser.add_argument("overrides", nargs="*", help="seq2seq-train overrides, e.g. data.src_lang=fr")
    args = parser.parse_args()
    cfg = compose(args.overrides).data
    alpha = args.alpha if args.alpha is not None else cfg.sampling_alpha
    src, tgt = read_parallel(cfg.dir, cfg.train_split, cfg.src_lang, cfg.tgt_lang)
    tok = build_tokenizer(cfg, src, tgt)
    print(f"{cfg.dir}/{cfg.train_split}: {len(src)} pairs, alpha {alpha}, nbest {cfg.sampling_nbest}", flush=True)

    with tempfile.TemporaryDirectory() as cache:
        def prepare() -> tuple[list[Sampler], float]:
            start = time.perf_counter()
            samplers = [Sampler(model, lines, alpha, cfg.sampling_nbest, cfg.spm_type == "bpe", cache)
                        for model, lines in ((tok.src_model, src), (tok.target_model, tgt))]
            return samplers, time.perf_counter() - start

        cold = prepare()[1]  # timed without tracemalloc, which slows building the lattices several times over
        ours, cached = prepare()
        size = sum(f.stat().st_size for f in Path(cache).iterdir()) / 2**20
        del ours
        tracemalloc.start()
        ours, _ = prepare()
        memory = tracemalloc.get_traced_memory()[0] / 2**20
        tracemalloc.stop()
    print(f"seq2seq: preparation (both sides), cold (prepared and written to the cache) {cold:.2f} s, from the "
          f"cache {cached:.2f} s ({cold / cached:.0f} times faster; {size:.0f} MiB on disk); {memory:.0f} MiB held; "
          f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB", flush=True)

    procs = [tok.src, tok.tgt]
    times: dict[str, list[float]] = {"seq2seq": [], "sentencepiece": []}
    draws: dict[str, list[list[list[int]]]] = {}
    for r in range(args.rounds):
        start = time.perf_counter()
        draws["seq2seq"] = [s.sample(2 * r + k) for k, s in enumerate(ours)]
        times["seq2seq"].append(time.perf_counter() - start)
        start = time.perf_counter()
        draws["sentencepiece"] = []
        for k, (proc, lines) in enumerate(zip(procs, (src, tgt), strict=True)):
            spm.set_random_generator_seed(2 * r + k)
            draws["sentencepiece"].append(proc.encode(lines, enable_sampling=True, alpha=alpha,
                                                      nbest_size=cfg.sampling_nbest, num_threads=1))
        times["sentencepiece"].append(time.perf_counter() - start)
        print(f"round {r + 1}: one epoch's sampling (both sides): seq2seq {times['seq2seq'][-1]:.2f} s, "
              f"SentencePiece {times['sentencepiece'][-1]:.2f} s", flush=True)
    best = [tok.encode_src(src), tok.encode_tgt(tgt)]
    for name, sides in draws.items():
        pieces = statistics.mean(len(ids) for side in sides for ids in side)
        changed = sum(ids != b for side, best_side in zip(sides, best, strict=True)
                      for ids, b in zip(side, best_side, strict=True)) / (len(src) + len(tgt))
        print(f"{name}: {pieces:.3f} pieces a sentence, {100 * changed:.1f}% of sentences segmented otherwise "
              "than the best segmentation")


if __name__ == "__main__":
    main()
