"""scripts/attention_cost.py (the cost of attention as the source grows) and scripts/profile_step.py (where a
training step's time goes): their arithmetic, and a short run of each that must report every number."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import attention_cost  # noqa: E402
import profile_step  # noqa: E402


def test_exponent_recovers_the_power_of_a_growth() -> None:
    quadratic = [(s, 3e-6 * s**2, 0.0) for s in (50, 100, 200, 400)]
    linear_plus_constant = [(s, 1.0 + 0.01 * s, 0.0) for s in (10, 100, 200, 400)]
    assert attention_cost.exponent(quadratic, fit_from=50) == pytest.approx(2.0)
    assert attention_cost.exponent(linear_plus_constant, fit_from=100) < 1.0  # a constant part flattens it
    assert attention_cost.exponent(quadratic, fit_from=100) == pytest.approx(2.0)  # only S >= fit_from


def test_operators_are_sorted_into_kinds() -> None:
    kinds = {name: profile_step.kind_of(name) for name in (
        "aten::mm", "aten::addmm", "MmBackward0", "aten::_fused_adam_", "aten::_foreach_norm", "aten::tanh",
        "aten::_log_softmax", "LogSoftmaxBackward0", "aten::native_layer_norm", "aten::cat")}
    assert kinds == {"aten::mm": "matrix products", "aten::addmm": "matrix products",
                     "MmBackward0": "matrix products", "aten::_fused_adam_": "optimizer",
                     "aten::_foreach_norm": "optimizer", "aten::tanh": "elementwise and memory",
                     "aten::_log_softmax": "loss", "LogSoftmaxBackward0": "loss",
                     "aten::native_layer_norm": "elementwise and memory", "aten::cat": "elementwise and memory"}


def test_quick_attention_cost_reports_every_form_length_and_phase(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "scripts/attention_cost.py", "--quick", "--threads", "1", "--out",
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    saved = json.loads((tmp_path / "attention_cost.json").read_text())
    assert set(saved["points"]) == {"luong_dot", "transformer"}
    for phases in saved["points"].values():
        for phase in ("train", "decode"):
            assert [p[0] for p in phases[phase]] == [10, 20, 40]
            assert all(p[1] > 0 and p[2] >= 0 for p in phases[phase])
    assert (tmp_path / "attention_cost.png").stat().st_size > 0
    assert "| luong_dot | train |" in out.stdout


@pytest.mark.skipif(not (ROOT / "data" / "multi30k").exists(), reason="needs data/multi30k")
def test_profile_of_a_step_accounts_for_its_time() -> None:
    out = subprocess.run([sys.executable, "scripts/profile_step.py", "--steps", "2", "--warmup", "1", "--threads",
                          "1", "--", "model=small"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ms_per_step"] > 0
    assert result["shares"]["matrix products"] > 0.05
    assert sum(result["shares"].values()) == pytest.approx(1.0, abs=0.02)
