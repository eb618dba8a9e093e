"""scripts/soak_serve.py, for a few seconds on the toy model: good answers equal the offline translation, every
bad request gets its status, and the figures are printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(400)
def test_a_short_soak_passes_and_prints_its_figures(toy_run: Path) -> None:
    pytest.importorskip("fastapi")
    out = subprocess.run([sys.executable, "scripts/soak_serve.py", "--checkpoint", str(toy_run / "best.pt"),
                          "--minutes", "0.1", "--sentences", "40"],
                         cwd=ROOT, capture_output=True, text=True, timeout=360)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "soak: passed" in out.stdout
    assert re.search(r"good requests: [1-9]\d* answered \(\d+ sentences\), 0 wrong", out.stdout)
    assert re.search(r"bad requests: [1-9]\d*, 0 with an unexpected status", out.stdout)
    for name in ("malformed JSON: 400", "text/plain: 415", "wrong Host: 421", "too many sentences: 422"):
        assert name in out.stdout  # each kind was sent (and answered as it must be) at least once
    assert re.search(r"/health: [1-9]\d* probes, slowest \d+ ms", out.stdout)
    assert re.search(r"server memory \(resident\): \d+ MiB after warm-up, peak \d+ MiB", out.stdout)
    assert "stopped with status 0, 0 tracebacks" in out.stdout
