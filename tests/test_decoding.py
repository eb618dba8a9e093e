"""The one decoding layer (seq2seq/inference/decoding.py): length-sorted token batches in, n-best lists out in
input order."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.config import DecodeConfig, ModelConfig
from seq2seq.inference.decoding import detokenize, length_batches, one_line, translate_ids
from seq2seq.nn.model import Seq2Seq
from seq2seq.special import BOS, PAD


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 40), max_size=60), st.integers(1, 120))
def test_length_batches_cover_every_sentence_once_within_the_budget(lengths: list[int], budget: int) -> None:
    batches = length_batches(lengths, budget)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    order = [i for b in batches for i in b]
    assert [lengths[i] for i in order] == sorted(lengths)  # shortest first: little padding
    for b in batches:
        width = max(lengths[i] for i in b) + 1
        assert len(b) == 1 or width * len(b) <= budget  # only a sentence alone may exceed the budget


@pytest.fixture(scope="module")
def model() -> Seq2Seq:
    torch.manual_seed(0)
    cfg = ModelConfig(emb_size=16, enc_hidden=8, dec_hidden=16, attention_size=8, dropout=0.0)
    return Seq2Seq(cfg, 20, 20).eval()


SOURCES = [[5, 6, 7, 8, 9, 10], [], [7], [9, 8, 7, 6], [], [11, 12, 13]]


@pytest.mark.parametrize("beam", [1, 3])
def test_results_come_back_in_input_order_whatever_the_batching(model: Seq2Seq, beam: int) -> None:
    decode = DecodeConfig(beam_size=beam, nbest=beam, max_len_a=1.0, max_len_b=3)
    together = translate_ids(model, SOURCES, DecodeConfig(**{**decode.__dict__, "batch_tokens": 1000}))
    one_by_one = translate_ids(model, SOURCES, DecodeConfig(**{**decode.__dict__, "batch_tokens": 1}))
    alone = [translate_ids(model, [s], decode)[0] for s in SOURCES]
    for a, b, c in zip(together, one_by_one, alone, strict=True):
        assert [h.tokens for h in a] == [h.tokens for h in b] == [h.tokens for h in c]
        assert [h.score for h in a] == pytest.approx([h.score for h in c], abs=1e-5)
    assert together[1] == [] and together[4] == []  # an empty source has no hypotheses
    assert all(len(hyps) == beam for i, hyps in enumerate(together) if SOURCES[i])
    for src, hyps in zip(SOURCES, together, strict=True):
        for h in hyps:
            assert PAD not in h.tokens and BOS not in h.tokens
            assert h.attention.device == torch.device("cpu") and h.attention.size(1) == len(src)


def test_progress_counts_every_sentence(model: Seq2Seq) -> None:
    done: list[int] = []
    translate_ids(model, SOURCES, DecodeConfig(beam_size=2, batch_tokens=8), progress=done.append)
    assert sum(done) == len(SOURCES) and done[0] == 2  # the empty ones first


def test_one_line_removes_every_line_break() -> None:
    text = one_line("a\nb\rc\x0bd\x0ce\x1cf\x85g\u2028h\u2029i")
    assert text.splitlines() == [text] and "\n" not in text


class _Pieces:
    """A stand-in tokenizer whose decoding leaves line breaks and spaces around the text."""

    def decode_tgt(self, ids: list[list[int]]) -> list[str]:
        return [" x\ny " if seq else "" for seq in ids]


def test_detokenize_gives_one_stripped_line_per_hypothesis() -> None:
    assert detokenize(_Pieces(), [[4, 5], []]) == ["x y", ""]  # type: ignore[arg-type]
