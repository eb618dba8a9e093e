"""Training and decoding throughput in float32 and bfloat16, peak memory, FLOPs per target token and MFU.

    python scripts/benchmark.py                              # experiment=joeynmt_reference on Multi30k en-de
    python scripts/benchmark.py --checkpoint runs/x/best.pt  # decode with a trained model (realistic lengths)
    python scripts/benchmark.py --quick                      # about a minute; used by the tests
    python scripts/benchmark.py --train-only --steps 60      # training throughput alone
    python scripts/benchmark.py -- model/attention=bahdanau  # any seq2seq-train overrides after --

First the GEMM peak of this CPU in both precisions (large square matmuls) and the GFLOP/s of the model's
largest products at their real shapes; then training in each precision (``--precisions``; bf16 only where
the CPU computes it natively, as emulated bf16 runs at a few per cent of fp32's speed), one right after
the other, with its MFU: the model's FLOPs (seq2seq/nn/flops.py, the attention's from the registry) per
second over that precision's peak; then decoding in fp32, bf16 and int8. Each phase runs in its own process
so that its peak resident memory is its own. Prints a table and, last, one JSON line. Run nothing else
while it measures; quote ratios measured in one run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from queue import Empty

from seq2seq import cpu

cpu.openmp_defaults()  # before torch is imported, as seq2seq-train does: OpenMP reads its settings once (cpu.py)

import torch  # noqa: E402

from seq2seq.cli.schemas import compose  # noqa: E402
from seq2seq.config import Config  # noqa: E402
from seq2seq.device import cpu_name, native_bf16  # noqa: E402
from seq2seq.nn.flops import forward_flops  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def gemm_gflops(m: int, k: int, n: int, dtype: torch.dtype, seconds: float = 0.7) -> float:
    """Achieved GFLOP/s of an (m, k) x (k, n) matmul in ``dtype``, repeated for ``seconds`` after a warm-up."""
    a, b, c = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype), torch.empty(m, n, dtype=dtype)
    torch.mm(a, b, out=c)  # warm-up (oneDNN picks and caches its kernel)
    repeats, elapsed, start = 0, 0.0, time.perf_counter()
    while elapsed < seconds or repeats < 2:
        torch.mm(a, b, out=c)
        repeats, elapsed = repeats + 1, time.perf_counter() - start
    return 2 * m * k * n * repeats / elapsed / 1e9


def gemm_peak(threads: int, dtype: torch.dtype = torch.float32, seconds: float = 0.7) -> float:
    """The practical peak of this CPU in ``dtype``: the best GFLOP/s of 1024², 2048² and 4096² matmuls."""
    torch.set_num_threads(threads)
    return max(gemm_gflops(n, n, n, dtype, seconds) for n in (1024, 2048, 4096))


def real_shapes(cfg: Config, vocab: int, sentences: int = 200, src_len: int = 14, tgt_len: int = 15) -> dict:
    """The largest products of one training step of ``cfg``'s model at a typical Multi30k batch (about 200
    sentences of 14 source and 15 target pieces fill train.batch_tokens=3000): name -> (m, k, n)."""
    m = cfg.model
    b, bt = sentences, sentences * tgt_len
    width = m.d_model if m.decoder == "transformer" else m.output_size
    shapes = {"vocabulary projection": (bt, width, vocab)}
    if m.decoder == "transformer":
        shapes["feed-forward W_1"] = (bt, m.d_model, m.ffn_size)
    else:
        shapes["decoder step gates"] = (b, m.dec_hidden, 3 * m.dec_hidden)
    if m.encoder == "transformer":
        shapes["encoder W^Q, W^K, W^V"] = (b * src_len, m.d_model, 3 * m.d_model)
    else:
        shapes["encoder input gates"] = (b * src_len, m.src_emb_size, 3 * m.enc_hidden)
    return shapes


def gemm_table(cfg: Config, vocab: int, threads: int, seconds: float = 0.7,
               precisions: Sequence[str] = tuple(DTYPES)) -> dict:
    """``precisions``' square peak and their GFLOP/s at ``cfg``'s real shapes."""
    torch.set_num_threads(threads)
    result = {}
    for name in precisions:
        dtype = DTYPES[name]
        result[f"gemm_peak_gflops_{name}"] = gemm_peak(threads, dtype, seconds)
        for shape, (m, k, n) in real_shapes(cfg, vocab).items():
            key = f"gemm_{name}_{shape.replace(' ', '_').replace(',', '')}_{m}x{k}x{n}_gflops"
            result[key] = gemm_gflops(m, k, n, dtype, seconds)
    return result


def trainer_and_batches(cfg: Config, count: int) -> tuple:
    """A trainer for ``cfg`` and the first ``count`` batches of epoch 1, and the seconds the batches took to
    build. The steps run on the corpus' own segmentation, so the trainer needs no subword sampler (nor its
    set-up); nothing is written."""
    from seq2seq.data.corpus import load_corpus
    from seq2seq.training.plan import BatchPlan
    from seq2seq.training.trainer import Trainer

    corpus = load_corpus(cfg.data)
    trainer = Trainer(replace(cfg, data=replace(cfg.data, sampling_alpha=None)), corpus, run_dir=Path("/tmp"))
    plan = BatchPlan(corpus.train, cfg.train.batch_tokens, cfg.train.batch_sentences, cfg.seed)
    start = time.perf_counter()
    batches = [plan.batch(p) for p in plan.epoch(1)[:count]]
    return trainer, batches, time.perf_counter() - start


def _train_phase(cfg: Config, warmup: int, steps: int, queue: mp.Queue) -> None:
    cpu.setup(cfg.threads or 2)
    trainer, batches, _ = trainer_and_batches(cfg, warmup + steps)
    for batch in batches[:warmup]:
        trainer.optimizer_step([batch], trainer.progress)
    tgt = src = 0
    flops = 0.0
    v = trainer.corpus.tokenizer.tgt_vocab_size
    start = time.perf_counter()
    for batch in batches[warmup:]:
        trainer.optimizer_step([batch], trainer.progress)
        tgt += batch.n_tgt_tokens
        src_tokens = int(batch.src_lens.sum())
        src += src_tokens
        flops += 3 * forward_flops(cfg.model, v, batch.src.size(0), batch.src.size(1), batch.tgt_in.size(1),
                                   src_tokens)
    seconds = time.perf_counter() - start
    p = cfg.train.precision
    queue.put({f"train_{p}_tgt_tokens_per_s": tgt / seconds, f"train_{p}_src_tokens_per_s": src / seconds,
               "train_flops_per_tgt_token": flops / tgt, f"train_{p}_gflops_per_s": flops / seconds / 1e9,
               f"train_{p}_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "params": trainer.model.num_parameters()})


def _decode_phase(cfg: Config, checkpoint: str | None, sentences: int, beam: int, precision: str,
                  queue: mp.Queue) -> None:
    """Decode ``sentences`` validation lines with ``precision``: fp32, bf16 (autocast) or int8 (quantize=int8).
    Validation, not test: the BLEU it prints for a candidate checkpoint must not be a look at the test set."""
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
    if precision == "int8":
        from seq2seq.inference.quantize import quantize

        model = quantize(model, "int8", torch.device("cpu"))
    src, ref = split_lines(data, data.valid_split, sentences)
    decode = replace(cfg.decode, beam_size=beam, nbest=1)
    ids = tok.encode_src(src)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        translate_ids(model, ids[:8], decode)  # warm-up
        start = time.perf_counter()
        results = translate_ids(model, ids, decode)
        seconds = time.perf_counter() - start
    bleu = corpus_scores(detokenize(tok, [r[0].tokens if r else [] for r in results]), ref).bleu
    name = f"decode_{precision}_" + ("greedy" if beam == 1 else f"beam{beam}")
    queue.put({f"{name}_sentences_per_s": len(src) / seconds, f"{name}_bleu": bleu,
               f"{name}_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


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
    parser.add_argument("--quick", action="store_true",
                        help="a few steps and sentences, short GEMM timings, beam 5 only (about a minute)")
    parser.add_argument("--checkpoint", help="decode with this trained checkpoint instead of an untrained model")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-only", action="store_true", help="skip decoding (to time one training change)")
    parser.add_argument("--precisions", help="training precisions, timed one right after the other (default: "
                        "fp32,bf16 on a CPU with native bf16, fp32 elsewhere)")
    parser.add_argument("--decode-precisions", help="decoding precisions: fp32, bf16 (autocast), int8 (quantize=int8); "
                        "default: fp32,bf16,int8 on a CPU with native bf16, fp32,int8 elsewhere")
    parser.add_argument("overrides", nargs="*", help="seq2seq-train overrides (default experiment=joeynmt_reference)")
    args = parser.parse_args()
    overrides = args.overrides or ["experiment=joeynmt_reference"]
    cfg = compose([*overrides, f"threads={args.threads}"])
    steps, warmup, sentences = (3, 1, 40) if args.quick else (args.steps, args.warmup, args.sentences)
    native = native_bf16()
    if not native and args.precisions is None:  # emulated bf16 runs at a few % of fp32's speed: hours, not minutes
        print("this CPU has no native bfloat16 (no AVX512-BF16 or AMX), so bf16 is not timed; "
              "--precisions fp32,bf16 times it anyway (slowly)", file=sys.stderr)
    precisions = (args.precisions or ("fp32,bf16" if native else "fp32")).split(",")
    decode_precisions = (args.decode_precisions or ("fp32,bf16,int8" if native else "fp32,int8")).split(",")
    if unknown := set(precisions) - set(DTYPES):
        parser.error(f"--precisions: unknown {', '.join(sorted(unknown))}; choose from {', '.join(DTYPES)}")
    if unknown := set(decode_precisions) - {*DTYPES, "int8"}:
        parser.error(f"--decode-precisions: unknown {', '.join(sorted(unknown))}; choose from fp32, bf16, int8")
    result = {"overrides": overrides, "cpu": cpu_name(), "threads": args.threads, "native_bf16": native}
    timed = [p for p in DTYPES if p in precisions or p in decode_precisions]
    result |= gemm_table(cfg, cfg.data.vocab_size, args.threads, 0.05 if args.quick else 0.7, timed)
    for p in precisions:
        result |= run_phase(_train_phase, replace(cfg, train=replace(cfg.train, precision=p)), warmup, steps)
        # MFU: the model's FLOPs per second against this precision's square-matmul peak
        result[f"train_{p}_mfu"] = result[f"train_{p}_gflops_per_s"] / result[f"gemm_peak_gflops_{p}"]
    if {"fp32", "bf16"} <= set(precisions):
        result["train_bf16_speedup"] = result["train_bf16_tgt_tokens_per_s"] / result["train_fp32_tgt_tokens_per_s"]
    for beam in () if args.train_only else (5,) if args.quick else (1, 5):
        for p in decode_precisions:
            result |= run_phase(_decode_phase, cfg, args.checkpoint, sentences, beam, p)
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value:,.2f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
