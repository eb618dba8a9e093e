"""scripts/kill_resume.py: the default recipe (scaled down, subword sampling on) killed with SIGKILL at random
moments and during checkpoint writes, resumed each time, ends bitwise equal to an uninterrupted run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"


@pytest.mark.skipif(not MULTI30K.is_dir(), reason="needs ../shared/data/multi30k")
@pytest.mark.timeout(900)
def test_kills_at_random_moments_lose_at_most_one_save_interval(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "kill_resume.py"), "--kills", "4", "--lines", "600",
                          "--steps", "30", "--save-every", "4", "--work", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert "weights bitwise equal to the uninterrupted run: True; metrics.jsonl equal: True" in out.stdout
    assert "during a checkpoint write" in out.stdout
