"""The benchmark's FLOP count (seq2seq/nn/flops.py) and its --quick mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from seq2seq.config import ModelConfig
from seq2seq.device import native_bf16
from seq2seq.nn.flops import forward_flops
from seq2seq.nn.model import Seq2Seq
from seq2seq.registry import ATTENTIONS
from seq2seq.special import PAD

ROOT = Path(__file__).resolve().parents[1]


def test_flops_of_a_tiny_luong_dot_model_by_hand() -> None:
    m = ModelConfig(attention="luong_dot", emb_size=2, enc_hidden=1, dec_hidden=2, bidirectional=True)
    # encoder: 2 directions x B*S x 3H x (E + H) = 2 * 1 * 3 * 3 = 18 MACs per source token
    # bridge once per sentence: Hm x L*H = 2 * 2 = 4
    # decoder per target token: G(E + extra + H) = 6 * (2 + 2 + 2) = 36; scores S*Hq = 2*2 = 4;
    # context S*Hm = 2*2 = 4; W_c (Hm + H) * H = 4 * 2 = 8; vocabulary O * V = 2 * 5 = 10  -> 62
    assert forward_flops(m, v=5, b=1, s=2, t=1) == 2 * (2 * 18 + 4 + 62)


def test_scaled_dot_costs_what_dot_costs_and_multihead_its_projections() -> None:
    """scaled_dot divides the dot score elementwise: the same products, the scores and W_c included;
    multihead adds W^Q, [W^K, W^V] and W^O to a dot score of width A."""
    sizes = {"emb_size": 2, "enc_hidden": 1, "dec_hidden": 2, "attention_size": 4, "attention_heads": 2}
    dot = forward_flops(ModelConfig(attention="luong_dot", **sizes), v=5, b=1, s=2, t=1)
    assert forward_flops(ModelConfig(attention="scaled_dot", **sizes), v=5, b=1, s=2, t=1) == dot
    multihead = forward_flops(ModelConfig(attention="multihead", **sizes), v=5, b=1, s=2, t=1)
    # dot's scores S*Hq = 4 and context S*Hm = 4 become: keys and values S*Hm*2A = 2*2*8 = 32 once,
    # W^Q Hq*A = 8, scores S*A = 8, values S*A = 8, W^O A*Hm = 8
    assert multihead == dot + 2 * (32 + 8 + 8 + 8 + 8 - 4 - 4)


CASES = [(a, cell, None) for a in sorted(ATTENTIONS) for cell in ("gru", "lstm")]
CASES += [(a, "gru", 2) for a in sorted(ATTENTIONS) if ATTENTIONS[a].wiring == "luong"]  # local-p


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")  # said by mkldnn.flags() below
@pytest.mark.parametrize(("attention", "cell", "window"), CASES, ids=[f"{a}-{c}-{w}" for a, c, w in CASES])
def test_flops_match_torchs_count_of_a_forward_pass(attention: str, cell: str, window: int | None) -> None:
    """The count from the shapes against torch's FlopCounterMode over the real forward pass: every matrix
    product the network does, two layers each side, a batch with padding. oneDNN's fused LSTM kernel hides its
    products from the counter, so it is off here."""
    m = ModelConfig(cell=cell, attention=attention, emb_size=6, enc_hidden=4, enc_layers=2, dec_hidden=8,
                    dec_layers=2, attention_size=6, attention_heads=2, attention_window=window, dropout=0.0)
    b, s, t, v = 3, 5, 4, 11
    torch.manual_seed(0)
    model = Seq2Seq(m, 13, v).eval()
    lengths = torch.tensor([s, 3, 1])
    src = torch.randint(4, 13, (b, s)).masked_fill(torch.arange(s) >= lengths.unsqueeze(1), PAD)
    tgt_in = torch.randint(4, v, (b, t))
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
        model(src, lengths, tgt_in)
    assert forward_flops(m, v, b, s, t, src_tokens=int(lengths.sum())) == counter.get_total_flops()


TRANSFORMERS = [("transformer", "transformer", "multihead", "pre"), ("transformer", "transformer", "multihead", "post"),
                ("transformer", "rnn", "bahdanau", "pre"), ("transformer", "rnn", "luong_general", "pre"),
                ("transformer", "rnn", "multihead", "pre")]


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
@pytest.mark.parametrize(("encoder", "decoder", "attention", "norm"), TRANSFORMERS,
                         ids=["-".join(c) for c in TRANSFORMERS])
def test_transformer_flops_match_torchs_count(encoder: str, decoder: str, attention: str, norm: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The Transformer and the hybrid (a Transformer encoder under an RNN decoder): the count from the shapes
    against torch's over the real forward pass, padded batch included. FlopCounterMode does not see inside the
    CPU's fused scaled_dot_product_attention, so it runs here as the two products it stands for."""

    def unfused(q, k, v, attn_mask=None):
        scores = q @ k.transpose(-2, -1) / q.size(-1) ** 0.5
        return (scores if attn_mask is None else scores.masked_fill(~attn_mask, float("-inf"))).softmax(-1) @ v

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", unfused)
    m = ModelConfig(encoder=encoder, decoder=decoder, attention=attention, norm=norm, d_model=8, ffn_size=12,
                    attention_heads=2, enc_layers=2, dec_layers=2, emb_size=6, dec_hidden=8, attention_size=8,
                    dropout=0.0)
    b, s, t, v = 3, 5, 4, 11
    torch.manual_seed(0)
    model = Seq2Seq(m, v, v).eval()
    lengths = torch.tensor([s, 3, 1])
    src = torch.randint(4, v, (b, s)).masked_fill(torch.arange(s) >= lengths.unsqueeze(1), PAD)
    tgt_in = torch.randint(4, v, (b, t))
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
        model(src, lengths, tgt_in)
    assert forward_flops(m, v, b, s, t, src_tokens=int(lengths.sum())) == counter.get_total_flops()


@pytest.mark.skipif(not (ROOT / "data" / "multi30k").exists(), reason="needs data/multi30k")
def test_quick_benchmark_reports_every_number() -> None:
    out = subprocess.run([sys.executable, "scripts/benchmark.py", "--quick", "--threads", "1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # bf16 is timed only where the CPU computes it natively (emulated, one step takes minutes)
    native = native_bf16()
    assert result["native_bf16"] is native
    floats = ("fp32", "bf16") if native else ("fp32",)
    keys = ["train_flops_per_tgt_token", *(["train_bf16_speedup"] if native else [])]
    for p in floats:
        keys += [f"gemm_peak_gflops_{p}", f"train_{p}_tgt_tokens_per_s", f"train_{p}_src_tokens_per_s",
                 f"train_{p}_peak_rss_mib", f"train_{p}_mfu", f"gemm_{p}_vocabulary_projection_3000x512x8000_gflops"]
    for p in (*floats, "int8"):  # --quick decodes with beam 5 only
        keys += [f"decode_{p}_beam5_sentences_per_s", f"decode_{p}_beam5_peak_rss_mib"]
    for key in keys:
        assert result[key] > 0, key
    if not native:
        assert not any("bf16" in key for key in result if key != "native_bf16"), "bf16 timed on a CPU without it"
        assert "no native bfloat16" in out.stderr
    assert result["params"] == 12270400  # JoeyNMT's reference architecture: 12.26 M in its own count


def test_benchmark_decodes_validation_lines_not_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """The BLEU the benchmark prints for a candidate checkpoint must be no look at the test set: its decoding
    phase reads ``data.valid_split``. The corpus is faked (no data needed); the phase stops at the read."""
    import importlib.util
    import types

    import seq2seq.data.corpus as corpus_module
    from seq2seq.cli.schemas import compose

    monkeypatch.setattr(os, "environ", dict(os.environ))  # the script sets OpenMP's defaults when imported
    spec = importlib.util.spec_from_file_location("benchmark_script", ROOT / "scripts" / "benchmark.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    read = []

    class Stop(Exception):
        pass

    def split_lines(data, split, count=None, directory=None):
        read.append(split)
        raise Stop

    tokenizer = types.SimpleNamespace(src_vocab_size=20, tgt_vocab_size=20)
    monkeypatch.setattr(corpus_module, "load_corpus", lambda data: types.SimpleNamespace(tokenizer=tokenizer))
    monkeypatch.setattr(corpus_module, "split_lines", split_lines)
    monkeypatch.setattr(benchmark.cpu, "setup", lambda threads: None)
    cfg = compose(["model.emb_size=8", "model.enc_hidden=8", "model.dec_hidden=8", "model.attention_size=8"])
    with pytest.raises(Stop):
        benchmark._decode_phase(cfg, None, 10, 1, "fp32", None)
    assert read == [cfg.data.valid_split] and cfg.data.valid_split != cfg.data.test_split


def test_benchmark_sets_openmps_defaults_before_torch_starts() -> None:
    """OpenMP reads its wait policy once, when torch is imported: the benchmark must time what seq2seq-train
    runs with, so it sets the defaults first (seq2seq/cpu.py)."""
    probe = ("import sys\nfrom seq2seq import cpu\nreal = cpu.openmp_defaults\n"
             "def spy(*a, **k):\n    print('torch imported first:', 'torch' in sys.modules)\n    return real(*a, **k)\n"
             "cpu.openmp_defaults = spy\nsys.path.insert(0, 'scripts')\nimport benchmark\nimport os\n"
             "print('set:', os.environ.get('OMP_WAIT_POLICY') or os.environ.get('GOMP_SPINCOUNT'))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "torch imported first: False" in out.stdout and "set: None" not in out.stdout, out.stdout
