"""The attention study (seq2seq/report/study.py, attention_study.py, seq2seq/cli/study.py) on hand-made inputs,
and its scripts on the toy model."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch

from seq2seq.cli import study as cs
from seq2seq.device import cpu_name
from seq2seq.report import attention_study as ca
from seq2seq.report import study
from seq2seq.report.study import (
    attention_entropy,
    bleu_by_length,
    bucket_labels,
    diagonal_mass,
    length_bucket,
    measure_scores,
    score_spread,
)

ROOT = Path(__file__).resolve().parents[1]


def test_length_buckets_and_their_labels() -> None:
    edges = (10, 20)
    assert [length_bucket(n, edges) for n in (1, 10, 11, 20, 21, 99)] == [0, 0, 1, 1, 2, 2]
    assert bucket_labels(edges) == ["1-10", "11-20", "21+"]


def test_bleu_by_length_scores_each_bucket_alone() -> None:
    refs = ["a cat sat on the mat today", "the dog ran in the park", "x y z w v u"]
    hyps = [refs[0], "no overlap whatsoever here at all", refs[2]]
    out = bleu_by_length(hyps, refs, [5, 12, 30], edges=(10, 20))
    assert [(label, n) for label, n, _ in out] == [("1-10", 1), ("11-20", 1), ("21+", 1)]
    assert out[0][2] == pytest.approx(100.0) and out[1][2] == pytest.approx(0.0) and out[2][2] == pytest.approx(100.0)
    assert bleu_by_length(hyps, refs, [5, 5, 5], edges=(10, 20))[1] == ("11-20", 0, None)


def test_entropy_is_zero_for_one_hot_rows_and_log_s_for_even_ones() -> None:
    assert attention_entropy(torch.eye(4)) == pytest.approx(0.0)
    assert attention_entropy(torch.full((3, 5), 0.2)) == pytest.approx(math.log(5))
    mixed = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert attention_entropy(mixed) == pytest.approx(math.log(2) / 2)


def test_diagonal_mass() -> None:
    assert diagonal_mass(torch.eye(6)) == pytest.approx(1.0)
    assert diagonal_mass(torch.eye(6).flip(1), width=0) == pytest.approx(0.0)  # reversed: off the diagonal
    even = torch.full((9, 9), 1 / 9)
    assert diagonal_mass(even, width=1) == pytest.approx((3 * 7 + 2 * 2) / 9 / 9)  # 3 columns inside, 2 at the ends
    stretched = torch.zeros(3, 5)  # 3 target rows over 5 source positions: the diagonal goes 0, 2, 4
    stretched[0, 0] = stretched[1, 2] = stretched[2, 4] = 1.0
    assert diagonal_mass(stretched, width=0) == pytest.approx(1.0)


def test_score_spread_is_the_rows_sd_and_top_two_gap() -> None:
    std, gap = score_spread(torch.tensor([[0.0, 1.0, 5.0], [2.0, 2.0, 2.0]]))
    assert std == pytest.approx((torch.tensor([0.0, 1.0, 5.0]).std(unbiased=False).item() + 0) / 2)
    assert gap == pytest.approx((4.0 + 0.0) / 2)
    heads = torch.tensor([[[0.0, 3.0], [1.0, 0.0]]])  # (B=1, N=2, S=2): multihead's scores, a row per head
    assert score_spread(heads) == pytest.approx((1.0, 2.0))
    assert score_spread(torch.tensor([7.0, 7.0, 1.0]))[1] == 0.0  # one row, a tie at the top
    assert all(math.isnan(x) for x in score_spread(torch.tensor([[3.0]])))  # one position: no spread


def test_attention_scores_script_watches_the_scores_and_lets_go(translator, toy_run: Path, tmp_path: Path) -> None:
    src = tmp_path / "src.txt"
    src.write_text("a b c d\ne f g\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "scripts/attention_scores.py", str(toy_run / "best.pt"), "--src", str(src)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    found = re.fullmatch(re.escape(f"{toy_run / 'best.pt'}: ") + r"\w+, 2 sentences: score sd (\S+), top-2 gap (\S+), "
                         r"entropy (\S+) nats(, \|\|W_a\|\|_2 \S+)?", line)
    assert found, line
    assert all(math.isfinite(float(x)) and float(x) >= 0 for x in found.groups()[:3]), line
    before = translator.translate(["a b c d e"], beam_size=1)
    assert "score sd" in measure_scores(translator, "toy", ["a b c"])
    assert "score" not in vars(translator.model.decoder.attention)  # the watch is gone after measuring
    assert translator.translate(["a b c d e"], beam_size=1) == before


def test_attention_scores_script_names_a_missing_checkpoint() -> None:
    out = subprocess.run([sys.executable, "scripts/attention_scores.py", "nope.pt"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "nope.pt" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_paired_bootstrap_is_sacrebleus_with_the_baseline_first(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {}

    class FakeTest:
        def __init__(self, named_systems, metrics, references, test_type, n_samples):
            calls.update(systems=[n for n, _ in named_systems], metrics=list(metrics), refs=references,
                         test_type=test_type, n_samples=n_samples)

        def __call__(self):
            result = type("R", (), {})
            base, a, b = result(), result(), result()
            base.p_value, a.p_value, b.p_value = None, 0.01, 0.4
            return {}, {"BLEU": [base, a, b]}

    import sacrebleu.significance

    monkeypatch.setattr(sacrebleu.significance, "PairedTest", FakeTest)
    p = study.paired_bootstrap(("base", ["x"]), [("a", ["y"]), ("b", ["z"])], ["r"], samples=500)
    assert p == {"a": 0.01, "b": 0.4}
    assert calls == {"systems": ["base", "a", "b"], "metrics": ["BLEU"], "refs": [["r"]], "test_type": "bs",
                     "n_samples": 500}


def test_the_study_summarizes_a_run(toy_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    run = tmp_path / "run"  # a copy, with the overrides Hydra records for a run started from the command line
    shutil.copytree(toy_run, run)
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("- model.dropout=0.1\n- seed=3\n", encoding="utf-8")
    script = ROOT / "scripts" / "compare_attention.py"
    proc = subprocess.run([sys.executable, str(script), "--summarize", str(run), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.read_text())
    assert summary["overrides"] == ["model.dropout=0.1", "seed=3"]
    assert summary["test_bleu"] > 90 and len(summary["hypotheses"]) == len(summary["src_lengths"])
    assert 0 < summary["diagonal"] <= 1 and summary["entropy"] >= 0
    assert summary["heatmaps"] and summary["heatmaps"][0]["line"] == 3
    metrics = [json.loads(x) for x in (toy_run / "metrics.jsonl").read_text().splitlines()]
    bleu = [b for _, b, _ in summary["curve"]]
    assert summary["curve"][bleu.index(max(bleu))][2] == summary["best_epoch"]  # the first best validation
    assert [e for _, _, e in summary["curve"]] == [m["epoch"] for m in metrics]
    assert summary["train_tokens"] > 0


def test_convergence_is_the_first_epoch_near_the_best_at_the_quiet_speed() -> None:
    # (minutes, BLEU, epoch): the best (30.0) comes at epoch 4, but epoch 2 is already within 0.5 of it
    runs = [{"epochs": 4, "train_tokens": 1_200_000, "tokens_per_s": 500.0,
             "curve": [[3.0, 20.0, 1], [6.0, 29.6, 2], [9.0, 29.4, 3], [12.0, 30.0, 4]]},
            {"epochs": 4, "train_tokens": 1_200_000, "tokens_per_s": 700.0,
             "curve": [[2.0, 20.0, 1], [4.0, 25.0, 2], [6.0, 28.0, 3], [8.0, 31.0, 4]]}]
    assert [ca.converged_epoch(r) for r in runs] == [2, 4]
    # 300k target tokens an epoch: 600k / 1000 tok/s = 10 min, 1.2M = 20 min
    assert ca.convergence(runs, 1000.0) == (1000.0, True, [2.0, 4.0], [10.0, 20.0])
    assert ca.convergence(runs, None) == (600.0, False, [2.0, 4.0], [6.0, 8.0])  # the runs' own minutes there
    assert ca.cpu_hours(runs) == pytest.approx(20 / 60)
    assert ca.mean_sd([2.0]) == "2.00" and ca.mean_sd([1.0, 3.0]) == "2.00 ± 1.41" and ca.mean_sd([]) == "–"
    assert ca.format_p(1 / 1001) == "< 0.001" and ca.format_p(0.0421) == "0.042" and ca.format_p(math.nan) == "–"


REFS = ["a b c d", "e f g h", "i j k l"]


def fake_run(data: Path, bleu: float, seed: int, attends: bool = True) -> dict:
    """A finished run's summary as compare_attention.py writes it, over the 3-line test set in ``data``."""
    heatmap = [{"line": 0, "src": ["x"], "tgt": ["a"], "weights": [[1.0], [1.0]]}]
    return {"params": 1000, "valid_bleu": bleu, "test_bleu": bleu + 1, "test_chrf": 50.0, "tokens_per_s": 100.0,
            "minutes_to_best": 2.0, "epochs": 2, "best_epoch": 2, "train_tokens": 12_000,
            "curve": [[1.0, bleu - 5, 1], [2.0, bleu, 2]], "entropy": 0.5 * seed if attends else None,
            "diagonal": 0.5 if attends else None, "src_lengths": [1, 12, 25], "hypotheses": REFS[:2] + [f"s{seed}"],
            "heatmaps": heatmap if attends else [], "test": [str(data), "test", "en", "de"]}


def fake_test_set(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.en").write_text("x\ny\nz\n", encoding="utf-8")
    (data / "test.de").write_text("\n".join(REFS) + "\n", encoding="utf-8")
    return data


def test_the_report_pools_the_seeds_and_pairs_them_with_bahdanaus(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Three bahdanau seeds, two of luong_dot (seeds 1 and 3) and one of none (seed 2, no attention): means,
    p-values over the seeds both have, and the figures."""
    data = fake_test_set(tmp_path)
    run = partial(fake_run, data)
    out = tmp_path / "study"
    (out / "runs").mkdir(parents=True)
    for name, seed, bleu in (("bahdanau", 1, 30.0), ("bahdanau", 2, 32.0), ("bahdanau", 3, 34.0),
                             ("luong_dot", 1, 20.0), ("luong_dot", 3, 22.0), ("none", 2, 5.0)):
        (out / "runs" / f"{name}_s{seed}.json").write_text(json.dumps(run(bleu, seed, name != "none")))
    calls = []

    def fake_bootstrap(baseline, systems, references, samples=1000):
        calls.append((baseline[1], [h for _, h in systems], list(references)))
        return {systems[0][0]: 0.5 / len(references)}

    seed_calls = []

    def fake_seed_bootstrap(baseline, system, references):
        seed_calls.append(([h[-1] for h in baseline], [h[-1] for h in system], len(references)))
        return 0.004, -10.0

    monkeypatch.setattr(ca, "paired_bootstrap", fake_bootstrap)
    monkeypatch.setattr(ca, "seed_paired_bootstrap", fake_seed_bootstrap)
    rows = {r["variant"]: r for r in ca.report(out, [1, 2, 3])}
    assert list(rows) == ["bahdanau", "luong_dot", "none"]
    assert rows["bahdanau"]["valid_bleu"] == [30.0, 32.0, 34.0] and rows["bahdanau"]["p_seeds"] == []
    assert rows["luong_dot"]["p_seeds"] == [1, 3] and rows["none"]["p_seeds"] == [2]
    # per seed: seed 1 against seed 1, seed 3 against seed 3; across seeds: the seeds both have, kept apart (not
    # concatenated into one longer test set), against the references once
    dot = [c for c in calls if c[1][0][-1] in ("s1", "s3") and c[0][-1] in ("s1", "s3")]
    assert [(c[0][-1], c[1][0][-1], len(c[2])) for c in dot] == [("s1", "s1", 3), ("s3", "s3", 3)]
    assert seed_calls[0] == (["s1", "s3"], ["s1", "s3"], 3)
    assert rows["luong_dot"]["p_vs_bahdanau"] == [0.5 / 3, 0.5 / 3]
    assert rows["luong_dot"]["p_vs_bahdanau_paired"] == 0.004
    assert rows["luong_dot"]["seeds_vs_bahdanau"] == "every seed below"
    table = (out / "results.md").read_text()
    assert "| bahdanau | 3 | 0.00 M | 32.00 ± 2.00 | 33.00 ± 2.00 | 50.00 ± 0.00 | – | – | – | – |" in table
    assert ("| luong_dot | 2 | 0.00 M | 21.00 ± 1.41 | 22.00 ± 1.41 | 50.00 ± 0.00 | -10.00 | 0.004 | "
            "every seed below | 0.167 |") in table
    assert table.splitlines()[4].endswith("| – | – |")  # none: no entropy, no diagonal
    assert "CPU time: 6 runs, 0.2 thread-hours" in table
    assert [b[:2] for b in rows["bahdanau"]["bleu_by_length"]] == [("1-10", 1), ("11-15", 1), ("16-20", 0), ("21+", 1)]
    assert json.loads((out / "results.json").read_text())[1]["variant"] == "luong_dot"
    for figure in ("valid_bleu.png", "bleu_by_length.png", "heatmaps.png"):
        assert (out / figure).stat().st_size > 0


def test_the_report_checks_each_summarys_settings_against_the_recipe(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A summary records its run's overrides: the report takes it when they are its row's recipe (the run's own
    seed and resume aside; an equal-time row's epochs from speed.json), stops on every one trained with other
    settings, naming them all, and names those from before the record."""
    data = fake_test_set(tmp_path)
    out = tmp_path / "study"
    (out / "runs").mkdir(parents=True)
    speed = {"tokens_per_s": {"bahdanau": 1000.0, "transformer": 750.0}}  # 12 epochs x 0.75: 9 for the Transformer
    (out / "speed.json").write_text(json.dumps(speed))
    bahdanau = {**fake_run(data, 30.0, 1), "overrides": [*ca.overrides("bahdanau", {}), "seed=1", "resume=true"]}
    time_row = ca.overrides("transformer_time", speed)
    assert "train.max_epochs=9" in time_row
    summaries = {"bahdanau_s1": bahdanau, "bahdanau_s2": fake_run(data, 31.0, 2),  # no overrides: an older one
                 "transformer_time_s1": {**fake_run(data, 29.0, 1), "overrides": [*time_row, "seed=1"]}}
    for name, summary in summaries.items():
        (out / "runs" / f"{name}.json").write_text(json.dumps(summary))
    monkeypatch.setattr(ca, "paired_bootstrap", lambda base, systems, *a, **k: {systems[0][0]: 0.5})
    monkeypatch.setattr(ca, "seed_paired_bootstrap", lambda *a, **k: (0.5, 0.0))
    assert [r["seeds"] for r in ca.report(out, [1, 2])] == [[1, 2], [1]]
    assert "its settings: 1 run (bahdanau seed 2)" in (out / "results.md").read_text()
    # speed.json measured again, slower: the equal-time row is no longer Bahdanau's time
    (out / "speed.json").write_text(json.dumps({"tokens_per_s": {"bahdanau": 1000.0, "transformer": 500.0}}))
    with pytest.raises(SystemExit, match=r"1 summary was .*\n  .*transformer_time_s1.json: trained with "
                                         r"train.max_epochs=9; the recipe has train.max_epochs=6\n"):
        ca.report(out, [1, 2])
    (out / "speed.json").write_text(json.dumps(speed))
    # a run of bahdanau's settings under luong_dot's name, and a study asked for with more than its runs had
    (out / "runs" / "luong_dot_s1.json").write_text(json.dumps(bahdanau))
    with pytest.raises(SystemExit) as stop:
        ca.report(out, [1, 2], ["model.dropout=0.3"])
    lines = str(stop.value).splitlines()
    assert lines[0].startswith("3 summaries were trained with other settings")
    assert re.search(r"bahdanau_s1.json: trained with \(nothing else\); the recipe has model.dropout=0.3$", lines[1])
    assert re.search(r"luong_dot_s1.json: trained with model/attention=bahdanau; the recipe has model.dropout=0.3 "
                     r"model/attention=luong_dot$", lines[2])
    assert "transformer_time_s1.json" in lines[3] and "give the same ones after --" in lines[4]


def test_speed_is_benchmark_py_on_one_thread_and_resumes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        out = 'table\n{"train_fp32_tgt_tokens_per_s": 1234.56}\n'  # the key benchmark.py prints
        return subprocess.CompletedProcess(cmd, 0, stdout=out, stderr="")

    monkeypatch.setattr(cs.subprocess, "run", fake_run)
    recipe = [o for o in ca.STUDY if not o.startswith("threads=")]  # benchmark.py's --threads sets them
    here = cpu_name()
    old = {"recipe": recipe, "cpu": here, "tokens_per_s": {"bahdanau": 999.0}}
    (tmp_path / "speed.json").write_text(json.dumps(old))
    measured = cs.measure_speed(tmp_path, ["bahdanau", "local_p"], [])
    assert measured == {"recipe": recipe, "cpu": here, "tokens_per_s": {"bahdanau": 999.0, "local_p": 1234.6}}
    assert len(calls) == 1  # bahdanau was measured before
    cmd = calls[0]
    assert cmd[1].endswith("benchmark.py") and cmd[2:8] == ["--train-only", "--threads", "1", "--precisions", "fp32",
                                                            "--steps"]
    assert "model.attention_window=10" in cmd and "optim.lr=4e-3" in cmd
    assert not any(c.startswith("threads=") for c in cmd)
    assert json.loads((tmp_path / "speed.json").read_text()) == measured
    again = cs.measure_speed(tmp_path, ["bahdanau"], ["model.dropout=0.3"])  # another recipe: measured afresh
    assert again["tokens_per_s"] == {"bahdanau": 1234.6} and calls[-1][-2:] == ["model.dropout=0.3",
                                                                             "model/attention=bahdanau"]
    # another machine: its speeds do not compare with these, so every variant is measured afresh
    (tmp_path / "speed.json").write_text(json.dumps({**measured, "cpu": "another CPU, AVX512, 2 cores"}))
    assert cs.measure_speed(tmp_path, ["local_p"], [])["tokens_per_s"] == {"local_p": 1234.6}
    assert json.loads((tmp_path / "speed.json").read_text())["cpu"] == here


def test_an_equal_time_row_trains_for_bahdanaus_time_at_its_own_speed() -> None:
    speed = {"tokens_per_s": {"bahdanau": 2000.0, "transformer": 1500.0, "hybrid_bahdanau": 2600.0}}
    assert ca.equal_time_epochs("transformer_time", speed) == 9  # 12 x 1500 / 2000
    assert ca.equal_time_epochs("hybrid_bahdanau_time", speed) == 16  # 15.6
    recipe = ca.overrides("transformer_time", speed)
    assert "train.max_epochs=9" in recipe and "train.max_epochs=12" not in recipe
    assert recipe[-len(ca.VARIANTS["transformer"]):] == ca.VARIANTS["transformer"]
    assert ca.overrides("transformer", speed) == [*ca.STUDY, *ca.VARIANTS["transformer"]]  # equal epochs
    with pytest.raises(SystemExit, match=r"--speed --variants bahdanau hybrid_bahdanau first"):
        ca.equal_time_epochs("hybrid_bahdanau_time", {"tokens_per_s": {"bahdanau": 2000.0}})


def test_the_study_names_a_damaged_or_outdated_file(tmp_path: Path) -> None:
    (tmp_path / "speed.json").write_text("{not json")
    with pytest.raises(SystemExit, match=r"speed.json .*delete it and run --speed again"):
        cs.measure_speed(tmp_path, ["bahdanau"], [])
    old = tmp_path / "bahdanau_s1.json"
    old.write_text(json.dumps({k: [[1.0, 2.0]] for k in ca.SUMMARY_KEYS if k not in ("best_epoch", "train_tokens")}))
    outdated = r"lacks best_epoch, train_tokens .*--summarize runs/attention_study/bahdanau_s1"
    with pytest.raises(SystemExit, match=outdated):
        ca.finished_run(old)


def test_a_failed_run_does_not_stop_the_others_and_is_named_at_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = fake_test_set(tmp_path)
    out = tmp_path / "study"

    def run_one(name, seed, out, runs, extra):
        if name == "none":
            raise RuntimeError("none seed 1 failed: out of memory")
        (out / "runs" / f"{name}_s{seed}.json").write_text(json.dumps(fake_run(data, 30.0, seed)))

    monkeypatch.setattr(cs, "run_one", run_one)
    monkeypatch.setattr(sys, "argv", ["compare_attention.py", "--out", str(out), "--runs", str(tmp_path / "runs"),
                                      "--variants", "none", "bahdanau", "--seeds", "1"])
    with pytest.raises(SystemExit) as stop:
        cs.main()
    assert stop.value.code == 1
    printed = capsys.readouterr()
    assert "none seed 1: FAILED: none seed 1 failed: out of memory" in printed.out
    assert "| bahdanau | 1 |" in printed.out  # the report of what finished
    assert "1 run(s) failed (none seed 1)" in printed.err


def test_the_seed_paired_bootstrap_resamples_sentences_not_seeds() -> None:
    """Three identical seeds carry no more evidence than one: the p-value is the same (pooling seeds x sentences,
    as the study once did, would shrink it). A clearly better system gets a small p, an equal one a large p."""
    from seq2seq.report.study import seed_paired_bootstrap

    refs = [f"the cat {i} sat on the mat number {i}" for i in range(60)]
    worse = [r if i % 3 else f"a dog {i}" for i, r in enumerate(refs)]
    better = [r if i % 10 else f"a dog {i}" for i, r in enumerate(refs)]
    one = seed_paired_bootstrap([worse], [better], refs, samples=300)
    three = seed_paired_bootstrap([worse] * 3, [better] * 3, refs, samples=300)
    assert one[0] == three[0] and abs(one[1] - three[1]) < 1e-9 and one[1] > 0 and one[0] < 0.05
    same, diff = seed_paired_bootstrap([worse, better], [better, worse], refs, samples=300)
    assert abs(diff) < 1e-9 and same > 0.5


def test_running_one_seed_keeps_the_other_seeds_in_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = fake_test_set(tmp_path)
    out = tmp_path / "study"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "bahdanau_s2.json").write_text(json.dumps(fake_run(data, 31.0, 2)))  # an earlier sitting's

    def run_one(name, seed, out, runs, extra):
        (out / "runs" / f"{name}_s{seed}.json").write_text(json.dumps(fake_run(data, 30.0, seed)))

    monkeypatch.setattr(cs, "run_one", run_one)
    monkeypatch.setattr(sys, "argv", ["compare_attention.py", "--out", str(out), "--runs", str(tmp_path / "runs"),
                                      "--variants", "bahdanau", "--seeds", "1"])
    cs.main()
    assert "| bahdanau | 2 |" in capsys.readouterr().out  # seed 1 just run, seed 2 from before
