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
