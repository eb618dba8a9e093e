"""The benchmark's FLOP count and its --quick mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from benchmark import forward_flops  # noqa: E402

from seq2seq.config import ModelConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_flops_of_a_tiny_luong_dot_model_by_hand() -> None:
    m = ModelConfig(attention="luong_dot", emb_size=2, enc_hidden=1, dec_hidden=2, bidirectional=True)
    # encoder: 2 directions x B*S x 3H x (E + H) = 2 * 1 * 3 * 3 = 18 MACs per source token
    # decoder per target token: G(E + extra + H) = 6 * (2 + 2 + 2) = 36; scores S*Hq = 2*2 = 4;
    # context S*Hm = 2*2 = 4; W_c (Hm + H) * H = 4 * 2 = 8; vocabulary O * V = 2 * 5 = 10  -> 62
    assert forward_flops(m, v=5, b=1, s=2, t=1) == 2 * (2 * 18 + 62)


@pytest.mark.skipif(not (ROOT / "data" / "multi30k").exists(), reason="needs data/multi30k")
def test_quick_benchmark_reports_every_number() -> None:
    out = subprocess.run([sys.executable, "scripts/benchmark.py", "--quick", "--threads", "1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("train_tgt_tokens_per_s", "train_src_tokens_per_s", "decode_greedy_sentences_per_s",
                "decode_beam5_sentences_per_s", "train_peak_rss_mib", "decode_beam5_peak_rss_mib",
                "train_flops_per_tgt_token", "gemm_peak_gflops", "train_fraction_of_gemm_peak"):
        assert result[key] > 0, key
    assert result["params"] == 12270400  # JoeyNMT's reference architecture: 12.26 M in its own count
