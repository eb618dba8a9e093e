"""Decoder details (seq2seq/nn/decoder.py); the decoder's properties under every attention are in test_model.py."""

from __future__ import annotations

import pytest
import torch

from seq2seq.config import ModelConfig
from seq2seq.nn.decoder import DecoderState
from seq2seq.nn.model import Seq2Seq
from seq2seq.registry import ATTENTIONS

SV, TV = 30, 40


def test_decoder_state_select_reorders_everything() -> None:
    state = DecoderState(torch.arange(6.0).view(1, 3, 2), None, torch.arange(3.0).view(3, 1))
    picked = state.select(torch.tensor([2, 0]))
    assert picked.hidden.tolist() == [[[4.0, 5.0], [0.0, 1.0]]] and picked.feed.tolist() == [[2.0], [0.0]]


@pytest.mark.parametrize("attention", sorted(ATTENTIONS))
def test_dropout_reaches_the_vocabulary_layer_once(attention: str) -> None:
    """With model.dropout=0.3, 30% of the vocabulary layer's input is zero for every wiring (dropped twice,
    Luong's h~_t would be zero at 1 - 0.7^2 = 51%)."""
    torch.manual_seed(0)
    cfg = ModelConfig(attention=attention, emb_size=64, enc_hidden=32, dec_hidden=64, attention_size=32,
                      dropout=0.3, attention_heads=2)
    model = Seq2Seq(cfg, SV, TV).train()
    seen = []
    model.decoder.vocab.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach()))
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randint(4, SV, (64, 12), generator=g), torch.randint(4, TV, (64, 20), generator=g)
    model(src, torch.full((64,), 12), tgt)
    (inputs,) = seen
    zero = float((inputs == 0).float().mean())
    assert zero == pytest.approx(0.3, abs=0.02), f"{zero:.3f} of the vocabulary layer's input is zero"


def coverage_model(**changes) -> Seq2Seq:
    torch.manual_seed(0)
    cfg = ModelConfig(attention="bahdanau", emb_size=16, enc_hidden=8, dec_hidden=16, attention_size=12, dropout=0.0,
                      coverage=True, **changes)
    return Seq2Seq(cfg, SV, TV).eval()


def test_coverage_accumulates_the_attention_and_enters_the_next_steps_weights() -> None:
    """Tu et al. (2016), linguistic coverage with fertility 1: C_i = C_{i-1} + a_i, read by the next score."""
    model = coverage_model()
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randint(4, SV, (2, 6), generator=g), torch.randint(4, TV, (2, 5), generator=g)
    lens = torch.tensor([6, 6])
    with torch.no_grad():
        for p in model.decoder.attention.parameters():
            p.mul_(20)  # sharper than uniform(-0.1, 0.1) makes them
        enc = model.encode(src, lens)
        state = model.init_state(enc)
        assert torch.equal(state.coverage, torch.zeros(2, 6))
        _, weights, final = model.decoder(tgt, enc, state)
        torch.testing.assert_close(final.coverage, weights.sum(1))  # (B, S): all the attention so far
        model.decoder.attention.v_c.weight.zero_()  # V_a = 0: the coverage no longer reaches the score
        _, blind, _ = model.decoder(tgt, enc, state)
    torch.testing.assert_close(blind[:, 0], weights[:, 0])  # C_0 = 0: the first step is the same
    assert (blind[:, 1:] - weights[:, 1:]).abs().max() > 0.01  # the later ones depend on it


def test_decoder_state_select_reorders_the_coverage() -> None:
    state = DecoderState(torch.zeros(1, 3, 2), None, None, torch.arange(6.0).view(3, 2))
    assert state.select(torch.tensor([2, 0])).coverage.tolist() == [[4.0, 5.0], [0.0, 1.0]]
