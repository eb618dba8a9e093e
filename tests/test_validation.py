"""Validation measures what seq2seq-evaluate reports: the BLEU that picked best.pt is that command's BLEU."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

EVALUATE = "from seq2seq.cli.main import evaluate; evaluate()"


def test_best_validation_bleu_equals_evaluate_on_the_validation_split(toy_run: Path, tmp_path: Path) -> None:
    records = [json.loads(line) for line in (toy_run / "metrics.jsonl").read_text().splitlines()]
    best = [r for r in records if r["best"]][-1]  # the record best.pt was saved at
    cmd = [sys.executable, "-c", EVALUATE, f"checkpoint={toy_run / 'best.pt'}", "split=val", "decode=greedy",
           "device=cpu", "threads=1", f"out={tmp_path / 'hyp.val'}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    reported = re.search(r"BLEU\|.* = (\d+\.\d\d) ", out.stdout)
    assert reported, out.stdout
    assert f"{best['bleu']:.2f}" == reported.group(1)
    assert 0 < best["bleu"] < 100  # a score that can differ, not a degenerate 0 or 100
