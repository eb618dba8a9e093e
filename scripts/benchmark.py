"""Training and decoding throughput, peak memory, FLOPs per target token and achieved GEMM fraction.

    python scripts/benchmark.py                              # experiment=joeynmt_reference on Multi30k en-de
    python scripts/benchmark.py --checkpoint runs/x/best.pt  # decode with a trained model (realistic lengths)
    python scripts/benchmark.py --quick                      # about a minute; used by the tests
    python scripts/benchmark.py --train-only --steps 60      # training throughput alone
    python scripts/benchmark.py -- model/attention=bahdanau  # any seq2seq-train overrides after --

Each phase runs in its own process so that its peak resident memory is its own. Prints a table and,
last, one JSON line. Run nothing else while it measures; quote ratios measured in one run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path
from queue import Empty

import torch

from seq2seq import cpu
from seq2seq.cli.schemas import compose
from seq2seq.config import Config
from seq2seq.nn.flops import forward_flops


def gemm_peak(threads: int, sizes: tuple[int, ...] = (1024, 2048, 4096), seconds: float = 2.0) -> float:
    """Achieved fp32 GFLOP/s of large square matmuls, the best size: the practical peak of this CPU."""
    torch.set_num_threads(threads)
    best = 0.0
    for n in sizes:
        a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        torch.mm(a, b, out=c)  # warm-up
        repeats, elapsed, start = 0, 0.0, time.perf_counter()
        while elapsed < seconds / len(sizes) or repeats < 2:
            torch.mm(a, b, out=c)
            repeats, elapsed = repeats + 1, time.perf_counter() - start
        best = max(best, 2 * n**3 * repeats / elapsed / 1e9)
    return best


def _train_phase(cfg: Config, warmup: int, steps: int, queue: mp.Queue) -> None:
    from seq2seq.data.corpus import load_corpus
    from seq2seq.training.plan import BatchPlan
    from seq2seq.training.trainer import Trainer

    cpu.setup(cfg.threads or 2)
    corpus = load_corpus(cfg.data)
    trainer = Trainer(cfg, corpus, run_dir=Path("/tmp"))  # a step writes nothing
    plan = BatchPlan(corpus.train, cfg.train.batch_tokens, cfg.train.batch_sentences, cfg.seed)
    batches = [plan.batch(p) for p in plan.epoch(1)[: warmup + steps]]
    for batch in batches[:warmup]:
        trainer.optimizer_step([batch], trainer.progress)
    tgt = src = 0
    flops = 0.0
    v = corpus.tokenizer.tgt_vocab_size
    start = time.perf_counter()
    for batch in batches[warmup:]:
        trainer.optimizer_step([batch], trainer.progress)
        tgt += batch.n_tgt_tokens
        src_tokens = int(batch.src_lens.sum())
        src += src_tokens
        flops += 3 * forward_flops(cfg.model, v, batch.src.size(0), batch.src.size(1), batch.tgt_in.size(1),
                                   src_tokens)
    seconds = time.perf_counter() - start
    queue.put({"train_tgt_tokens_per_s": tgt / seconds, "train_src_tokens_per_s": src / seconds,
               "train_flops_per_tgt_token": flops / tgt, "train_gflops_per_s": flops / seconds / 1e9,
               "train_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "params": trainer.model.num_parameters()})


def _decode_phase(cfg: Config, checkpoint: str | None, sentences: int, beam: int, queue: mp.Queue) -> None:
    from seq2seq.checkpoint import load_model
    from seq2seq.data.corpus import split_lines
    from seq2seq.inference.bleu import corpus_scores
    from seq2seq.inference.decoding import detokenize, translate_ids

    cpu.setup(cfg.threads or 2)
    if checkpoint:
        model, tok, ckpt_cfg = load_model(checkpoint)
        data = ckpt_cfg.data
    else:
        from seq2seq.data.corpus import load_corpus
        from seq2seq.nn.model import Seq2Seq

        tok = load_corpus(cfg.data).tokenizer
        model, data = Seq2Seq(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size).eval(), cfg.data
    src, ref = split_lines(data, data.test_split, sentences)
    decode = replace(cfg.decode, beam_size=beam, nbest=1)
    ids = tok.encode_src(src)
    translate_ids(model, ids[:8], decode)  # warm-up
    start = time.perf_counter()
    results = translate_ids(model, ids, decode)
    seconds = time.perf_counter() - start
    bleu = corpus_scores(detokenize(tok, [r[0].tokens if r else [] for r in results]), ref).bleu
    name = "greedy" if beam == 1 else f"beam{beam}"
    queue.put({f"decode_{name}_sentences_per_s": len(src) / seconds, f"decode_{name}_bleu": bleu,
               f"decode_{name}_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def run_phase(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    while True:  # a phase that dies (an error, the OOM killer) must not leave us waiting forever
        try:
            result = queue.get(timeout=1.0)
            break
        except Empty:
            if not proc.is_alive():
                raise SystemExit(f"error: the {target.__name__} phase exited with status {proc.exitcode} "
                                 "before reporting (its error is above)") from None
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few steps and sentences (about a minute)")
    parser.add_argument("--checkpoint", help="decode with this trained checkpoint instead of an untrained model")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-only", action="store_true", help="skip decoding (to time one training change)")
    parser.add_argument("overrides", nargs="*", help="seq2seq-train overrides (default experiment=joeynmt_reference)")
    args = parser.parse_args()
    overrides = args.overrides or ["experiment=joeynmt_reference"]
    cfg = compose([*overrides, f"threads={args.threads}"])
    steps, warmup, sentences = (3, 1, 40) if args.quick else (args.steps, args.warmup, args.sentences)
    result = {"overrides": overrides, "threads": args.threads, "gemm_peak_gflops": gemm_peak(args.threads)}
    result |= run_phase(_train_phase, cfg, warmup, steps)
    for beam in () if args.train_only else (1, 5):
        result |= run_phase(_decode_phase, cfg, args.checkpoint, sentences, beam)
    result["train_fraction_of_gemm_peak"] = result["train_gflops_per_s"] / result["gemm_peak_gflops"]
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value:,.2f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
