"""scripts/load_test.py on the toy model: every answer checked against seq2seq-evaluate, figures printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.inference.decoding import length_batches
from seq2seq.serving.harness import in_flight_batch_tokens

ROOT = Path(__file__).resolve().parents[1]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.integers(1, 40), min_size=200, max_size=400), st.sampled_from([4, 8, 16, 64]))
def test_ceiling_batches_hold_about_as_many_sentences_as_are_in_flight(lengths: list[int], in_flight: int) -> None:
    batches = length_batches(lengths, in_flight_batch_tokens(lengths, in_flight))
    assert 0.7 * in_flight <= len(lengths) / len(batches) <= 1.3 * in_flight


def test_load_test_checks_every_answer_and_prints_its_figures(toy_run: Path) -> None:
    pytest.importorskip("fastapi")
    out = subprocess.run([sys.executable, "scripts/load_test.py", "--checkpoint", str(toy_run / "best.pt"),
                          "--sentences", "24", "--clients", "3", "--per-request", "2", "--ceiling", "--timeout", "300"],
                         cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "answers: 24 equal to the offline translation, 0 differ, 0 missing" in out.stdout
    assert re.search(r"seq2seq-evaluate: 24 sentences, beam 5, 1 thread\(s\): [\d.]+ sentences/s", out.stdout)
    assert re.search(r"3 clients, 2 sentence\(s\) per request: 24 sentences in [\d.]+ s", out.stdout)
    assert re.search(r"batches of about 6 sentences \(decode.batch_tokens=\d+\): [\d.]+ sentences/s", out.stdout)
