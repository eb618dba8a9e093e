"""Where one training step's time goes: torch.profiler over training steps, summed into kinds of work.

    python scripts/profile_step.py                                   # the default model, fp32, 2 threads
    python scripts/profile_step.py --steps 20 -- train.precision=bf16
    python scripts/profile_step.py -- model=transformer optim=noam  # any seq2seq-train overrides after --

Builds the batches first (their time is the data path), runs a few warm-up steps, then profiles ``--steps``
steps and sorts every operator's own CPU time (``self_cpu_time_total``, on the calling thread: an operator's
intra-op threads work inside it) into kinds:

- matrix products (mm, addmm, bmm, linear's, the fused attention kernel);
- the optimizer (Adam's fused kernel, gradient clipping's norms and scaling, zeroing the gradients);
- the loss (log-softmax, NLL, their gradients);
- elementwise and memory work (activations, gates, masks, copies, concatenation, indexing, reductions);
- the data path: turning a plan's sentences into padded tensors (``BatchPlan.batch``), timed outside;
- Python and dispatch overhead: the step's wall time that no operator accounts for.

Prints a table of shares and the top operators, and one JSON line. Run nothing else while it measures.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

from seq2seq import cpu

KINDS = {  # first match wins, on the operator's name
    "matrix products": ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "scaled_dot_product", "mkldnn_rnn",
                        "_thnn_fused", "rnn_tanh", "gru_cell", "lstm_cell", "_flash_attention"),
    "optimizer": ("adam", "_foreach", "clip_grad", "zero_", "linalg_vector_norm"),
    "loss": ("log_softmax", "logsoftmax", "nll_loss", "nllloss", "cross_entropy"),
}


def kind_of(name: str) -> str:
    bare = name.removeprefix("aten::").lower()
    for kind, parts in KINDS.items():
        if any(p in bare for p in parts):
            return kind
    return "elementwise and memory"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=12, help="operators listed by own time")
    parser.add_argument("overrides", nargs="*", help="seq2seq-train overrides (default: the default model)")
    args = parser.parse_args()
    cpu.openmp_defaults()  # before torch is imported: OpenMP reads its settings once (seq2seq/cpu.py)
    cpu.setup(args.threads)
    from benchmark import trainer_and_batches  # scripts/benchmark.py
    from torch.profiler import ProfilerActivity, profile

    from seq2seq.cli.schemas import compose

    cfg = compose([*args.overrides, f"threads={args.threads}"])
    trainer, batches, data_seconds = trainer_and_batches(cfg, args.warmup + args.steps)
    data_seconds *= args.steps / len(batches)  # the data path's share of the profiled steps
    for batch in batches[: args.warmup]:
        trainer.optimizer_step([batch], trainer.progress)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for batch in batches[args.warmup:]:
            trainer.optimizer_step([batch], trainer.progress)
        step_seconds = time.perf_counter() - start
    own = defaultdict(float)  # kind -> seconds
    ops = []
    for event in prof.key_averages():
        seconds = event.self_cpu_time_total / 1e6
        own[kind_of(event.key)] += seconds
        ops.append((seconds, event.key, event.count))
    accounted = sum(own.values())
    own["data path (BatchPlan.batch)"] = data_seconds
    own["Python and dispatch overhead"] = max(0.0, step_seconds - accounted)
    total = step_seconds + data_seconds
    print(f"{args.steps} steps of {' '.join(args.overrides) or 'the default model'}, {args.threads} threads: "
          f"{1000 * total / args.steps:.1f} ms per step (data path included)")
    print("| kind | ms per step | share |\n|---|---:|---:|")
    for kind, seconds in sorted(own.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {1000 * seconds / args.steps:.1f} | {100 * seconds / total:.1f}% |")
    print(f"\n| operator (top {args.top} by own time) | kind | calls per step | ms per step |\n|---|---|---:|---:|")
    for seconds, name, count in sorted(ops, reverse=True)[: args.top]:
        print(f"| `{name}` | {kind_of(name)} | {count / args.steps:.0f} | {1000 * seconds / args.steps:.1f} |")
    print(json.dumps({"ms_per_step": round(1000 * total / args.steps, 2),
                      "shares": {k: round(v / total, 4) for k, v in own.items()}}))


if __name__ == "__main__":
    main()
