"""Train every attention variant under one budget on the same data, then tabulate and plot them.

    python scripts/compare_attention.py                        # Multi30k en->de, 600 steps each
    python scripts/compare_attention.py --steps 1000 --out runs/compare -- model.dec_hidden=512

Every variant gets the same settings and the same number of training steps (a step budget is fair even
when the machine is busy; tokens/s is reported beside it). Writes {out}/results.md (a Markdown table:
params, training tokens/s, best validation BLEU and chrF, test BLEU with beam 5, epochs) and
{out}/valid_bleu.png (validation BLEU against training time, one line per variant).
Runs that already finished in {out} are reused, so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

VARIANTS = {
    "none": ["model/attention=none"],
    "bahdanau": ["model/attention=bahdanau"],
    "luong_dot": ["model/attention=luong_dot"],
    "luong_general": ["model/attention=luong_general"],
    "luong_concat": ["model/attention=luong_concat"],
    "luong_general_local10": ["model/attention=luong_general", "model.attention_window=10"],
}
# A mid-sized model so that six variants fit in well under an hour on two CPU cores.
STUDY = ["model.emb_size=128", "model.enc_hidden=128", "model.dec_hidden=256", "model.attention_size=256",
         "model.dropout=0.2", "train.batch_tokens=3000", "train.patience=100",
         "train.max_minutes=null",  # the step budget alone ends (and, with the cosine schedule, paces) each run
         "optim.schedule=plateau"]  # as README's table was measured


def train(name: str, overrides: list[str], steps: int, out: Path, extra: list[str]) -> Path:
    run = out / name
    if (run / "last.pt").exists() and (run / "done").exists():
        return run
    if run.exists():
        subprocess.run(["rm", "-rf", str(run)], check=True)
    exe = str(Path(sys.executable).with_name("seq2seq-train"))
    args = [exe, *STUDY, *overrides, f"train.max_steps={steps}", f"train.valid_every_steps={max(1, steps // 4)}",
            f"hydra.run.dir={run}", *extra]
    print(f"== {name}: {' '.join(args[1:])}", flush=True)
    subprocess.run(args, check=True)
    (run / "done").touch()
    return run


def test_bleu(run: Path) -> float:
    from seq2seq.data import read_parallel
    from seq2seq.evaluate import score
    from seq2seq.translator import Translator

    translator = Translator.from_checkpoint(run / "best.pt", device="cpu")
    data = translator.config.data
    src, ref = read_parallel(data.dir, data.test_split, data.src_lang, data.tgt_lang)
    return score(translator.translate(src), ref).bleu


def summarize(name: str, run: Path) -> dict:
    from seq2seq.checkpoint import load_model

    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    timing = [json.loads(x) for x in (run / "timing.jsonl").read_text().splitlines()]
    best = max(metrics, key=lambda r: r["bleu"])
    model, _, _ = load_model(run / "best.pt")
    return {"variant": name, "params": model.num_parameters(), "tokens_per_s": timing[-1]["tokens_per_s"],
            "valid_bleu": best["bleu"], "valid_chrf": best["chrf"], "test_bleu": round(test_bleu(run), 2),
            "epochs": metrics[-1]["epoch"], "curve": [(t["elapsed_s"], t["bleu"]) for t in timing]}


def write_table(rows: list[dict], out: Path, command: str) -> str:
    lines = ["| attention | params | train tokens/s | best valid BLEU | valid chrF | test BLEU (beam 5) | epochs |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['params'] / 1e6:.2f} M | {r['tokens_per_s']:.0f} | {r['valid_bleu']:.2f} "
                     f"| {r['valid_chrf']:.2f} | {r['test_bleu']:.2f} | {r['epochs']} |")
    table = "\n".join(lines)
    (out / "results.md").write_text(f"Command: `{command}`\n\n{table}\n", encoding="utf-8")
    return table


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        xs, ys = zip(*r["curve"])
        ax.plot([x / 60 for x in xs], ys, marker="o", label=r["variant"])
    ax.set_xlabel("training wall time (minutes, validation included)")
    ax.set_ylabel("validation BLEU (greedy)")
    ax.set_title("Multi30k en-de: attention variants, same step budget")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600, help="training steps per variant")
    parser.add_argument("--out", default="runs/compare_attention")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("extra", nargs="*", help="more seq2seq-train overrides, after --")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [summarize(name, train(name, VARIANTS[name], args.steps, out, args.extra)) for name in args.variants]
    command = "python scripts/compare_attention.py " + " ".join(sys.argv[1:])
    print(write_table(rows, out, command.strip()))
    plot(rows, out / "valid_bleu.png")
    (out / "results.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(f"wrote {out / 'results.md'}, {out / 'valid_bleu.png'}")


if __name__ == "__main__":
    main()
