"""Encoder, decoder and Seq2Seq properties for every attention and both cells."""

from __future__ import annotations

import pytest
import torch

from seq2seq.config import ModelConfig
from seq2seq.nn.model import Seq2Seq
from seq2seq.registry import ATTENTIONS

SV, TV = 30, 40


CASES = [(a, c) for a in ATTENTIONS for c in ("gru", "lstm")] + [("luong_general", "gru-local")]


def make(attention: str, cell: str, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    window = 3 if cell.endswith("local") else None
    cfg = ModelConfig(cell=cell.split("-")[0], attention=attention, emb_size=16, enc_hidden=12, dec_hidden=24,
                      attention_size=10, dec_layers=2 if cell == "lstm" else 1, dropout=0.0, attention_window=window,
                      attention_heads=2)
    return Seq2Seq(cfg, SV, TV).eval()


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor([7, 4, 1])
    src = torch.randint(4, SV, (3, 7), generator=g)
    src[torch.arange(7).unsqueeze(0) >= lens.unsqueeze(1)] = 0
    tgt = torch.randint(4, TV, (3, 5), generator=g)
    return src, lens, tgt


@pytest.mark.parametrize(("attention", "cell"), CASES)
def test_sentence_alone_equals_inside_padded_batch(attention: str, cell: str) -> None:
    model = make(attention, cell)
    src, lens, tgt = batch()
    with torch.no_grad():
        enc = model.encode(src, lens)
        logits, weights = model(src, lens, tgt)
        n = int(lens[1])
        enc1 = model.encode(src[1:2, :n], lens[1:2])
        logits1, weights1 = model(src[1:2, :n], lens[1:2], tgt[1:2])
    torch.testing.assert_close(enc1.memory[0], enc.memory[1, :n], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(enc1.final[0], enc.final[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits1[0], logits[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weights1[0], weights[1, :, :n], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("attention", "cell"), CASES)
def test_teacher_forcing_equals_step_by_step(attention: str, cell: str) -> None:
    model = make(attention, cell)
    src, lens, tgt = batch()
    with torch.no_grad():
        logits, weights = model(src, lens, tgt)
        enc = model.encode(src, lens)
        state = model.init_state(enc)
        for t in range(tgt.size(1)):
            log_probs, w, state = model.decode_step(tgt[:, t], enc, state)
            torch.testing.assert_close(log_probs, logits[:, t].log_softmax(-1), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(w, weights[:, t], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("attention", "cell"), CASES)
def test_every_parameter_gets_a_gradient(attention: str, cell: str) -> None:
    model = make(attention, cell).train()
    src, lens, tgt = batch()
    logits, _ = model(src, lens, tgt)
    logits.log_softmax(-1).mean().backward()
    for name, p in model.named_parameters():
        if name == "encoder.embed.weight" or name == "decoder.embed.weight":
            continue  # rows of unused tokens stay zero; checked below for the used ones
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.encoder.embed.weight.grad[src[0]].abs().sum() > 0


@pytest.mark.parametrize("attention", [a for a in ATTENTIONS if a != "none"])
def test_attention_weights_are_returned_and_masked(attention: str) -> None:
    model = make(attention, "gru")
    src, lens, tgt = batch()
    with torch.no_grad():
        _, weights = model(src, lens, tgt)  # (B, T, S)
    assert weights.shape == (3, 5, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5))
    assert torch.all(weights[2, :, 1:] == 0)


def test_tied_embeddings_share_storage() -> None:
    cfg = ModelConfig(attention="bahdanau", emb_size=16, enc_hidden=8, dec_hidden=16, tie_embeddings=True)
    model = Seq2Seq(cfg, SV, TV)
    assert model.decoder.vocab.weight is model.decoder.embed.weight


def test_the_network_and_search_import_no_tokenizer() -> None:
    """The special ids live in seq2seq/special.py: the network, search and decoding need no sentencepiece."""
    import subprocess
    import sys

    code = ("import sys, seq2seq.nn.model, seq2seq.inference.search, seq2seq.inference.decoding; "
            "print(sorted(m for m in sys.modules if m in ('sentencepiece', 'seq2seq.data.tokenizer')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
