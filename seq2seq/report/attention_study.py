"""The attention study: every variant trained to convergence over several seeds, then compared. This module
is its recipe, each run's summary and the report; seq2seq/cli/study.py runs it (scripts/compare_attention.py):

    python scripts/compare_attention.py                      # all variants, seeds 1 2 3, two runs at a time
    python scripts/compare_attention.py --jobs 1 --seeds 1   # one run at a time, one seed
    python scripts/compare_attention.py --report             # only rebuild the report from what is done
    python scripts/compare_attention.py --speed              # time every variant's training, quiet machine
    python scripts/compare_attention.py --variants transformer_time hybrid_bahdanau_time   # equal CPU time

One recipe (STUDY below) for every variant on Multi30k en->de: 12 epochs with the cosine schedule annealing
the rate from 4e-3 to its floor by the last one (so every run ends converged; the curves show it), threads=1, so two
runs side by side use the two cores. A
finished run leaves everything the report needs in {out}/runs/{variant}_s{seed}.json (scores, test
hypotheses, attention statistics, three heat-maps), so the study resumes where it stopped, across
sittings, even without the checkpoints; an interrupted training run continues from its last.pt.

The report ({out}/results.md, results.json, valid_bleu.png, bleu_by_length.png, heatmaps.png): per variant
mean +- sd over seeds of the best validation BLEU and test BLEU / chrF (beam 5), parameters, training
tokens/s, epochs and minutes to convergence (the first epoch within 0.5 BLEU of the run's best), the
attention's entropy and diagonal mass, and paired bootstrap p-values against Bahdanau: one resampling the
test sentences with every seed's output kept, and the largest of sacreBLEU's seed-for-seed tests.

The rows beyond the RNN attentions: the Transformer and the hybrid (its encoder under the GRU decoder), both at
equal epochs and, as ``*_time`` rows, at equal CPU time (the epochs their quiet speed buys in Bahdanau's
time: EQUAL_TIME below), and Bahdanau with coverage.

Speed is measured apart from the runs, because two runs share the machine (and whatever else runs beside
them): --speed times 60 training steps of every variant with scripts/benchmark.py, one variant after
another on one thread, into {out}/speed.json, with the CPU it was measured on (another CPU measures
afresh). The report's tokens/s come from there, and its minutes to convergence are the training tokens up
to that epoch at that speed (validation not included). Without speed.json it shows the runs' own figures,
marked *.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from seq2seq.files import atomic_write
from seq2seq.registry import variant
from seq2seq.report.study import bleu_by_length, paired_bootstrap, seed_paired_bootstrap, seeds_apart

VARIANTS = {
    "bahdanau": ["model/attention=bahdanau"],
    "luong_dot": ["model/attention=luong_dot"],
    "luong_general": ["model/attention=luong_general"],
    "luong_concat": ["model/attention=luong_concat"],
    "scaled_dot": ["model/attention=scaled_dot"],
    "multihead": ["model/attention=multihead"],
    "local_p": ["model/attention=luong_general", "model.attention_window=10"],
    "none": ["model/attention=none"],
    # the self-attention rows (docs/attention-study.md, *Self-attention and coverage*): the Transformer of
    # Vaswani et al. (2017) at Wu et al. (2021)'s "tiny" size, d_model 128, 4 + 4 layers, 4 heads, ffn 512; its source
    # embedding apart from the target's (tied to the output), so its parameters (3.9 M) stay near the others' 4.1 M
    # Both self-attention rows warm the rate up over their first 300 updates (13% of 12 epochs), the one setting
    # of theirs apart from the study's optimiser: calibrated on seed 1 (docs/attention-study.md, *A first
    # calibration: the warm-up*, which holds the numbers)
    "transformer": ["model=transformer", "model.d_model=128", "model.ffn_size=512", "model.share_embeddings=false",
                    "optim.warmup_steps=300"],
    # Chen et al. (2018)'s hybrid: that Transformer's encoder under the study's GRU decoder with Bahdanau attention
    "hybrid_bahdanau": ["model/attention=bahdanau", "model.encoder=transformer", "model.enc_layers=4",
                        "model.d_model=128", "model.ffn_size=512", "optim.warmup_steps=300"],
    "bahdanau_coverage": ["model/attention=bahdanau", "model.coverage=true"],  # Tu et al. (2016), neural coverage
}
# A small model (dec_hidden = 2 x enc_hidden, as the dot scores need) so that the 8 RNN attentions x 3 seeds fit
# in about 5-7 hours of two cores (about 2 minutes an epoch on one thread, two runs side by side); a fixed budget
# of 12 epochs over which the cosine schedule anneals the rate from 4e-3 (calibrated: docs/attention-study.md,
# *The budget, calibrated*), and no early stopping, so every variant gets the same training.
EPOCHS = 12
STUDY = ["model.emb_size=128", "model.enc_hidden=128", "model.dec_hidden=256", "model.attention_size=256",
         "model.dropout=0.2", "optim.lr=4e-3", "train.max_minutes=null", f"train.max_epochs={EPOCHS}",
         "train.patience=100", "threads=1", "train.precision=fp32"]  # every row in float32, whatever the CPU
# Equal CPU time (a Transformer does more per epoch, or less, than a GRU): the variant trained for the epochs its
# quiet speed covers in the time Bahdanau's EPOCHS take (speed.json, measured on one machine), the cosine
# annealed over them; a row of its own beside the variant's equal-epochs row.
EQUAL_TIME = {"transformer_time": "transformer", "hybrid_bahdanau_time": "hybrid_bahdanau"}
ROWS = [*VARIANTS, *EQUAL_TIME]  # the report's rows, in order
HEATMAP_SENTENCES = (3, 150, 777)  # test_2016_flickr lines shown side by side
SCRIPT = "scripts/compare_attention.py"  # the command line, as messages name it


def equal_time_epochs(name: str, speed: dict) -> int:
    """The epochs ``EQUAL_TIME[name]`` gets in the training time of Bahdanau's EPOCHS, at their quiet speeds."""
    tokens_per_s = speed.get("tokens_per_s", {})
    base = EQUAL_TIME[name]
    if "bahdanau" not in tokens_per_s or base not in tokens_per_s:
        raise SystemExit(f"{name} trains for the time Bahdanau's {EPOCHS} epochs take, from their speeds: run "
                         f"python {SCRIPT} --speed --variants bahdanau {base} first (a quiet machine)")
    return max(1, round(EPOCHS * tokens_per_s[base] / tokens_per_s["bahdanau"]))


def overrides(name: str, speed: dict) -> list[str]:
    """The seq2seq-train settings of one row: the STUDY recipe and the variant's own (for an EQUAL_TIME row, its
    variant's with the epochs of equal_time_epochs)."""
    if name not in EQUAL_TIME:
        return [*STUDY, *VARIANTS[name]]
    epochs = equal_time_epochs(name, speed)
    return [o if not o.startswith("train.max_epochs=") else f"train.max_epochs={epochs}" for o in STUDY] + \
        VARIANTS[EQUAL_TIME[name]]


def summarize(run: Path, out_json: Path) -> None:
    """Everything the report needs from one finished run, into ``out_json`` (runs in its own process)."""
    from seq2seq import cpu
    from seq2seq.data.corpus import split_lines
    from seq2seq.inference.bleu import corpus_scores
    from seq2seq.inference.translator import Translator
    from seq2seq.report.study import attention_entropy, diagonal_mass
    from seq2seq.training.metrics import run_overrides

    cpu.setup(1)
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    # by step: a resumed run's timing.jsonl still holds what the killed process logged after its last save
    timing = {t["step"]: t for t in map(json.loads, (run / "timing.jsonl").read_text().splitlines())}
    timing = [timing[m["step"]] for m in metrics]
    best = max(i for i, m in enumerate(metrics) if m["best"])  # the record best.pt was saved at
    translator = Translator.from_checkpoint(run / "best.pt", device="cpu")
    attends = variant(translator.config.model.attention).score_class is not None
    data = translator.config.data
    src, ref = split_lines(data, data.test_split)
    results = translator.translations(src)
    hyps = [r.text for r in results]
    test = corpus_scores(hyps, ref)
    maps = [r.attention[0] for r in results if r.attention] if attends else []
    heatmaps = [{"line": i, "src": results[i].src_pieces, "tgt": results[i].tgt_pieces[0],
                 "weights": [[round(float(w), 4) for w in row] for row in results[i].attention[0]]}
                for i in HEATMAP_SENTENCES if attends and i < len(results) and results[i].attention]
    summary = {
        "params": translator.model.num_parameters(), "valid_bleu": metrics[best]["bleu"],
        "valid_chrf": metrics[best]["chrf"], "test_bleu": test.bleu, "test_chrf": test.chrf,
        "tokens_per_s": timing[-1]["tokens_per_s"], "minutes_to_best": timing[best]["elapsed_s"] / 60,
        "epochs": metrics[-1]["epoch"], "best_epoch": metrics[best]["epoch"],
        "train_tokens": round(timing[-1]["tokens_per_s"] * timing[-1]["train_s"]),  # target tokens, all epochs
        "curve": [(t["elapsed_s"] / 60, t["bleu"], t["epoch"]) for t in timing],  # minutes, BLEU, epoch
        "entropy": statistics.fmean(attention_entropy(m) for m in maps) if maps else None,
        "diagonal": statistics.fmean(diagonal_mass(m) for m in maps) if maps else None,
        "src_lengths": [len(r.src_pieces) for r in results], "hypotheses": hyps, "heatmaps": heatmaps,
        "test": [data.dir, data.test_split, data.src_lang, data.tgt_lang],
        "overrides": run_overrides(run),  # what it was trained with: the report checks them against the recipe
    }
    atomic_write(out_json, json.dumps(summary).encode("utf-8"))  # a kill mid-write must not leave a "done" run


def mean_sd(values: list[float], digits: int = 2) -> str:
    """mean ± sample sd; one value alone, without a spread it does not have."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def read_json(path: Path, fix: str) -> dict:
    """A JSON file of the study's; a damaged one stops the script with its name and ``fix``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SystemExit(f"cannot read {path} ({e}); {fix}") from None


def speed_of(out: Path) -> dict:
    """{out}/speed.json (the quiet speeds, their recipe and CPU); empty before --speed."""
    path = out / "speed.json"
    return read_json(path, "delete it and run --speed again") if path.exists() else {}


CONVERGED_WITHIN = 0.5  # BLEU: a run has converged at the first validation this close to its best


def converged_epoch(run: dict) -> int:
    """The first epoch whose validation BLEU is within CONVERGED_WITHIN of the run's best. The best epoch itself
    is a noisy argmax late in a cosine schedule (a flat tail picks any of its epochs)."""
    best = max(bleu for _, bleu, _ in run["curve"])
    return next(epoch for _, bleu, epoch in run["curve"] if bleu >= best - CONVERGED_WITHIN)


def convergence(runs: list[dict], quiet: float | None) -> tuple[float, bool, list[float], list[float]]:
    """Target tokens/s (and whether measured quietly), epochs and minutes to convergence (converged_epoch)
    over a variant's runs: the minutes are the training tokens up to that epoch at the quiet speed when it was
    measured (validation not included), else the runs' own elapsed minutes there (validation included)."""
    epochs = [converged_epoch(r) for r in runs]
    if quiet is None:
        minutes = [next(m for m, _, e in r["curve"] if e == epoch) for r, epoch in zip(runs, epochs, strict=True)]
        return statistics.fmean(r["tokens_per_s"] for r in runs), False, [float(e) for e in epochs], minutes
    return quiet, True, [float(e) for e in epochs], [r["train_tokens"] / r["epochs"] * e / quiet / 60
                                                     for r, e in zip(runs, epochs, strict=True)]


SUMMARY_KEYS = ("params", "valid_bleu", "test_bleu", "test_chrf", "tokens_per_s", "minutes_to_best", "epochs",
                "best_epoch", "train_tokens", "curve", "entropy", "diagonal", "src_lengths", "hypotheses",
                "heatmaps", "test")


def finished_run(path: Path) -> dict:
    """One run's summary; one from an older version of this script names the command that redoes it."""
    summary = read_json(path, "delete it: the study redoes the run")
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing or len(summary["curve"][0]) < 3:
        raise SystemExit(f"{path} lacks {', '.join(missing) or 'the epochs of its curve'} (an older summary); "
                         f"with its run directory at hand, redo it with: python {SCRIPT} --summarize "
                         f"runs/attention_study/{path.stem} {path}")
    return summary


RUN_OWN = ("seed=", "resume=")  # overrides that name the run, not the recipe


def recipe_mismatches(out: Path, done: dict[tuple[str, int], dict], speed: dict,
                      extra: list[str]) -> tuple[list[str], dict[str, list[int]]]:
    """The summaries in ``done`` whose recorded overrides (their run's last start's, the seed and resume aside)
    are not their row's recipe today plus ``extra``, each with what differs; and per row, the seeds whose
    summaries record no overrides (written before the record existed), which cannot be checked."""
    wrong, unchecked = [], {}
    for (name, seed), summary in done.items():
        if summary.get("overrides") is None:
            unchecked.setdefault(name, []).append(seed)
            continue
        trained = {o for o in summary["overrides"] if not o.startswith(RUN_OWN)}
        recipe = {*overrides(name, speed), *extra}
        if trained != recipe:
            wrong.append(f"{out / 'runs' / f'{name}_s{seed}.json'}: trained with "
                         f"{' '.join(sorted(trained - recipe)) or '(nothing else)'}; the recipe has "
                         f"{' '.join(sorted(recipe - trained)) or '(nothing else)'}")
    return wrong, unchecked


def report(out: Path, seeds: list[int], extra: list[str] = ()) -> list[dict]:
    """Aggregate the finished runs into results.json / results.md and the figures; ``extra``: the overrides
    the runs were given beyond the recipe (the study's command line after --)."""
    from seq2seq.data.corpus import read_parallel
    from seq2seq.report.study_plots import plot_by_length, plot_curves, plot_heatmaps

    done = {(n, s): finished_run(out / "runs" / f"{n}_s{s}.json") for n in ROWS for s in seeds
            if (out / "runs" / f"{n}_s{s}.json").exists()}
    if not done:
        raise SystemExit(f"no finished runs in {out / 'runs'} yet")
    speed_json = speed_of(out)
    wrong, unchecked = recipe_mismatches(out, done, speed_json, extra)
    if wrong:
        raise SystemExit(f"{len(wrong)} summar{'y was' if len(wrong) == 1 else 'ies were'} trained with other "
                         "settings than the study's recipe for their row:\n  " + "\n  ".join(wrong) +
                         "\nIf the runs were given more overrides, give the same ones after --. Otherwise each is "
                         f"another experiment: move it out of {out / 'runs'} (to keep it, as calibration/ does) or "
                         "delete it, and run the study again")
    splits = {tuple(r["test"]) for r in done.values()}
    if len(splits) > 1:
        raise SystemExit(f"the runs were tested on different splits ({sorted(splits)}); redo the odd ones")
    _, ref = read_parallel(*splits.pop())
    if any(len(r["hypotheses"]) != len(ref) for r in done.values()):
        raise SystemExit("a run's test hypotheses do not match the test split's length; redo it")
    speed = speed_json.get("tokens_per_s", {})
    rows = []
    for name in ROWS:
        mine = [(s, done[name, s]) for s in seeds if (name, s) in done]
        if not mine:
            continue
        pairs = [s for s, _ in mine if ("bahdanau", s) in done and name != "bahdanau"]
        p = [paired_bootstrap((f"bahdanau s{s}", done["bahdanau", s]["hypotheses"]),
                              [(f"{name} s{s}", done[name, s]["hypotheses"])], ref)[f"{name} s{s}"] for s in pairs]
        paired = seed_paired_bootstrap([done["bahdanau", s]["hypotheses"] for s in pairs],
                                       [done[name, s]["hypotheses"] for s in pairs], ref) if pairs else None
        apart = seeds_apart([done["bahdanau", s]["test_bleu"] for s in pairs],
                            [done[name, s]["test_bleu"] for s in pairs]) if pairs else None
        by_length = [bleu_by_length(r["hypotheses"], ref, r["src_lengths"]) for _, r in mine]
        tokens_per_s, quiet, epochs, minutes = convergence([r for _, r in mine], speed.get(EQUAL_TIME.get(name, name)))
        rows.append({
            "variant": name, "seeds": [s for s, _ in mine], "params": mine[0][1]["params"],
            **{k: [r[k] for _, r in mine] for k in ("valid_bleu", "test_bleu", "test_chrf", "entropy", "diagonal",
                                                    "curve")},
            "tokens_per_s": tokens_per_s, "speed_measured_quietly": quiet, "epochs_to_converge": epochs,
            "minutes_to_converge": minutes, "best_epoch": [r["best_epoch"] for _, r in mine],
            "p_vs_bahdanau": p, "p_seeds": pairs, "p_vs_bahdanau_paired": paired and paired[0],
            "bleu_minus_bahdanau": paired and paired[1], "seeds_vs_bahdanau": apart,
            "bleu_by_length": [(b[0], b[1], statistics.fmean(x[i][2] for x in by_length if x[i][2] is not None)
                                if any(x[i][2] is not None for x in by_length) else None)
                               for i, b in enumerate(by_length[0])],
            "heatmaps": mine[0][1]["heatmaps"],
        })
    (out / "results.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "heatmaps"} for r in rows],
                                                  indent=1), encoding="utf-8")
    (out / "results.md").write_text(table(rows, cpu_hours(list(done.values())), unchecked), encoding="utf-8")
    plot_curves(rows, out / "valid_bleu.png")
    plot_by_length(rows, out / "bleu_by_length.png")
    plot_heatmaps(rows, out / "heatmaps.png")
    return rows


def format_p(p: float | None, samples: int = 1000) -> str:
    """A p-value for the table; the smallest the bootstrap can give, 1 / (samples + 1), shown as a bound."""
    if p is None or p != p:
        return "–"
    return f"< {1 / samples:g}" if p <= 1 / (samples + 1) + 1e-12 else f"{p:.3f}"


def cpu_hours(runs: list[dict]) -> float:
    """The study's CPU time: every run's wall clock of training and validation (its curve's last minutes,
    kept across resumes), each run on one thread, so thread-hours. Not included: the test decodes, the time
    between sittings, and work after a run's last save that a kill threw away."""
    return sum(r["curve"][-1][0] for r in runs) / 60


def table(rows: list[dict], hours: float | None = None, unchecked: dict[str, list[int]] | None = None) -> str:
    """results.md: the rows, their notes, the CPU time and the runs whose settings could not be checked (row ->
    seeds)."""
    lines = ["| attention | seeds | params | best valid BLEU (greedy) | test BLEU (beam 5) | test chrF | "
             "test BLEU − bahdanau | p, sentences resampled, all seeds | seeds vs bahdanau's | "
             "p per seed (max) | target tokens/s | epochs to converge | "
             "training minutes to converge | entropy (nats) | diagonal mass |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        measured = [p for p in r["p_vs_bahdanau"] if p == p]  # NaN: sacreBLEU gave none
        per_seed = format_p(max(measured)) if measured else "–"
        stats = [mean_sd([x for x in r[k] if x is not None]) for k in ("entropy", "diagonal")]
        lines.append(f"| {r['variant']} | {len(r['seeds'])} | {r['params'] / 1e6:.2f} M | {mean_sd(r['valid_bleu'])} | "
                     f"{mean_sd(r['test_bleu'])} | {mean_sd(r['test_chrf'])} | "
                     + ("– | – | – | " if r["bleu_minus_bahdanau"] is None else
                        f"{r['bleu_minus_bahdanau']:+.2f} | {format_p(r['p_vs_bahdanau_paired'])} | "
                        f"{r['seeds_vs_bahdanau']} | ") +
                     f"{per_seed} | {r['tokens_per_s']:.0f}{'' if r['speed_measured_quietly'] else '*'} | "
                     f"{mean_sd(r['epochs_to_converge'], 1)} | {mean_sd(r['minutes_to_converge'])} | "
                     f"{stats[0]} | {stats[1]} |")
    lines.append(f"\np, sentences resampled: a paired bootstrap (two-sided, 1,000 resamples; Koehn 2004) of the test "
                 "BLEU averaged over the seeds both have, against Bahdanau's: each resample draws the 1,000 source "
                 "sentences and keeps every seed's output of each, so the sentence is the unit; it is conditional on "
                 "these seeds. Seeds vs bahdanau's: whether every seed's test BLEU lies above (below) every Bahdanau "
                 "seed's, the between-seed view. p per seed (max): sacreBLEU's paired bootstrap run seed by seed, "
                 f"the largest. Converged: the first epoch within {CONVERGED_WITHIN} BLEU of the run's "
                 "best validation BLEU (the cosine schedule ends at the last epoch for every variant, so this comes "
                 "late by construction)")
    if not all(r["speed_measured_quietly"] for r in rows):
        lines.append("\n\\* the runs' own figures, beside other runs (validation included); "
                     "`--speed` measures them quietly")
    if hours is not None:
        lines.append(f"\nCPU time: {sum(len(r['seeds']) for r in rows)} runs, {hours:.1f} thread-hours in all "
                     "(each run on one thread: the wall clock of its training and validation while its process ran, "
                     "beside the other runs; not counted: test decoding, time between sittings, work lost to a "
                     "kill)")
    if unchecked:
        count = sum(map(len, unchecked.values()))
        runs = "; ".join(f"{n} seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}"
                         for n, seeds in unchecked.items())
        lines.append(f"\nNot checked against the recipe, from before each run's summary recorded its settings: "
                     f"{count} run{'s' * (count > 1)} ({runs})")
    return "\n".join(lines) + "\n"
