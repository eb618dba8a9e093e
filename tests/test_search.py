"""Greedy and beam search against scripted models whose next-token probabilities are set by hand.

The scripted model reads a sentence id from src[:, 0]; its decoder state carries the whole prefix,
so the next-token distribution can depend on both.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import pytest
import torch
from torch import Tensor

from seq2seq.config import DecodeConfig
from seq2seq.errors import ConfigError
from seq2seq.inference.search import (
    beam_search,
    coverage_penalty,
    greedy_search,
    length_penalty,
    max_output_length,
    search,
)
from seq2seq.special import BOS, EOS, PAD

A, B = 4, 5  # two ordinary target tokens


Dist = Callable[[int, tuple[int, ...]], Tensor]  # (sentence id, prefix without BOS) -> log-probs (V,)


@dataclass
class Enc:
    sent: Tensor  # (B,)
    mask: Tensor  # (B, S)

    def select(self, idx: Tensor) -> Enc:
        return Enc(self.sent.index_select(0, idx), self.mask.index_select(0, idx))


@dataclass
class State:
    prefix: Tensor  # (N, t) tokens fed so far, BOS first

    def select(self, idx: Tensor) -> State:
        return State(self.prefix.index_select(0, idx))


class ScriptedModel:
    """Implements the search protocol; counts decode_step calls and the rows of each call.

    Attention at step t is a masked softmax peaked at source position (t + prev) % S_b, so each
    returned attention row can be matched to its step and hypothesis.
    """

    def __init__(self, dist: Dist, vocab_size: int) -> None:
        self.dist = dist
        self.vocab_size = vocab_size
        self.rows: list[int] = []

    @property
    def calls(self) -> int:
        return len(self.rows)

    def encode(self, src: Tensor, src_lens: Tensor) -> Enc:
        return Enc(src[:, 0].clone(), torch.arange(src.size(1)) < src_lens.unsqueeze(1))

    def init_state(self, enc: Enc) -> State:
        return State(torch.empty(enc.sent.size(0), 0, dtype=torch.long))

    def decode_step(self, prev: Tensor, enc: Enc, state: State) -> tuple[Tensor, Tensor, State]:
        self.rows.append(prev.size(0))
        prefix = torch.cat([state.prefix, prev.unsqueeze(1)], 1)  # (N, t+1)
        step = prefix.size(1) - 1
        rows = zip(enc.sent.tolist(), prefix.tolist(), strict=True)
        log_probs = torch.stack([self.dist(s, tuple(p[1:])) for s, p in rows])  # (N, V)
        lens = enc.mask.sum(1, keepdim=True)  # (N, 1)
        pos = torch.arange(enc.mask.size(1)).unsqueeze(0)  # (1, S)
        logits = -(pos - (step + prev.unsqueeze(1)) % lens).abs().float()  # (N, S)
        attn = logits.masked_fill(~enc.mask, float("-inf")).softmax(-1)  # (N, S)
        return log_probs, attn, State(prefix)


def table_dist(n_sent: int = 4, vocab: int = 8, steps: int = 40, seed: int = 0, eos: bool = True) -> Dist:
    """Random but fixed log-probs indexed by (sentence, last two tokens, step); EOS grows likelier.

    Depending on the token before the last one makes the output wrong when the decoder state
    (which alone remembers it) is not reordered along with the beam.
    """
    gen = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n_sent, vocab, vocab, steps, vocab, generator=gen)
    logits[..., EOS] += 0.4 * torch.arange(steps) - 1.0
    if not eos:
        logits[..., EOS] = float("-inf")
    table = logits.log_softmax(-1)

    def dist(sent: int, prefix: tuple[int, ...]) -> Tensor:
        last2 = (BOS, BOS) + prefix
        return table[sent, last2[-2], last2[-1], len(prefix)]

    return dist


def prob_dist(script: Callable[[tuple[int, ...]], dict[int, float]], vocab: int = 6) -> Dist:
    """Log-probs from hand-set probabilities {token: p} of each prefix (the sentence is ignored)."""

    def dist(sent: int, prefix: tuple[int, ...]) -> Tensor:
        probs = torch.zeros(vocab, dtype=torch.float64)
        for tok, p in script(prefix).items():
            probs[tok] = p
        return probs.log().float()

    return dist


def batch(sents: list[int], lens: list[int]) -> tuple[Tensor, Tensor]:
    """src (B, S) with the sentence id first, token 4 after it, PAD (0) beyond each length."""
    src = torch.zeros(len(sents), max(lens), dtype=torch.long)
    for i, (s, n) in enumerate(zip(sents, lens, strict=True)):
        src[i, :n] = 4
        src[i, 0] = s
    return src, torch.tensor(lens)


def log_prob_sum(dist: Dist, sent: int, tokens: list[int], with_eos: bool) -> float:
    seq = tokens + [EOS] if with_eos else tokens
    return sum(float(dist(sent, tuple(seq[:i]))[tok]) for i, tok in enumerate(seq))


def test_beam_size_one_equals_greedy() -> None:
    model = ScriptedModel(table_dist(), 8)
    src, lens = batch([0, 1, 2, 3], [3, 5, 2, 7])
    greedy = greedy_search(model, src, lens, DecodeConfig(max_len_a=1.0, max_len_b=8))
    beam = beam_search(model, src, lens, DecodeConfig(beam_size=1, alpha=0.0, max_len_a=1.0, max_len_b=8))
    assert beam.tokens == greedy.tokens
    assert beam.scores == greedy.scores
    assert len({len(t[0]) for t in greedy.tokens}) > 1  # the case is not degenerate
    for s, (toks, score) in enumerate(zip(greedy.tokens, greedy.scores, strict=True)):
        with_eos = len(toks[0]) < max_output_length(lens[s : s + 1], 1.0, 8).item()
        assert score[0] == pytest.approx(log_prob_sum(model.dist, s, toks[0], with_eos), abs=1e-5)
    penalised = beam_search(model, src, lens, DecodeConfig(beam_size=1, alpha=0.6, max_len_a=1.0, max_len_b=8))
    assert penalised.tokens == greedy.tokens


def long_detour(prefix: tuple[int, ...]) -> dict[int, float]:
    if prefix == ():
        return {A: 0.55, B: 0.45}
    if prefix == (A,):
        return {EOS: 0.6, B: 0.4}
    return {EOS: 1.0} if len(prefix) == 4 or prefix[0] == B else {B: 1.0}


def test_beam_size_one_equals_greedy_when_alpha_favours_longer() -> None:
    """A-EOS scores log(.33) / (7/6)^2 = -0.81, A-B-B-B-EOS log(.22) / (10/6)^2 = -0.55: a beam that
    kept going after its one slot finished would find the longer one; K = 1 must stay greedy."""
    src, lens = batch([0], [3])
    greedy = greedy_search(ScriptedModel(prob_dist(long_detour), 6), src, lens, DecodeConfig())
    beam = beam_search(ScriptedModel(prob_dist(long_detour), 6), src, lens, DecodeConfig(beam_size=1, alpha=2.0))
    assert greedy.tokens == beam.tokens == [[[A]]]
    assert beam.scores[0][0] == pytest.approx(math.log(0.55 * 0.6) / (7 / 6) ** 2, abs=1e-6)
    # K = 3: B-EOS (-0.59) and A-EOS finish at step 2, A-B goes on and wins
    wide = beam_search(ScriptedModel(prob_dist(long_detour), 6), src, lens,
                       DecodeConfig(beam_size=3, alpha=2.0, nbest=3))
    assert wide.tokens == [[[A, B, B, B], [B], [A]]]


def garden_path(prefix: tuple[int, ...]) -> dict[int, float]:
    if prefix == ():
        return {A: 0.6, B: 0.4}
    if prefix == (A,):
        return {EOS: 0.34, A: 0.33, B: 0.33}
    if prefix == (B,):
        return {EOS: 0.9, A: 0.05, B: 0.05}
    return {EOS: 1.0}


def test_greedy_and_beam_disagree_on_scripted_model() -> None:
    src, lens = batch([0], [3])
    greedy = greedy_search(ScriptedModel(prob_dist(garden_path), 6), src, lens, DecodeConfig())
    assert greedy.tokens == [[[A]]]
    assert greedy.scores[0][0] == pytest.approx(math.log(0.6) + math.log(0.34), abs=1e-6)

    model = ScriptedModel(prob_dist(garden_path), 6)
    beam = beam_search(model, src, lens, DecodeConfig(beam_size=2, alpha=0.0, nbest=2))
    assert beam.tokens == [[[B], [A]]]
    assert beam.scores[0] == pytest.approx([math.log(0.4 * 0.9), math.log(0.6 * 0.34)], abs=1e-6)
    assert model.calls == 2  # both beam slots finished at the second step


def test_exact_bound_stops_before_k_finished() -> None:
    src, lens = batch([0], [3])
    model = ScriptedModel(prob_dist(garden_path), 6)
    one = beam_search(model, src, lens, DecodeConfig(beam_size=3, alpha=0.0, nbest=1))
    assert one.tokens == [[[B]]]
    assert model.calls == 2  # live A-A (0.198) can no longer beat B-EOS (0.36)

    model = ScriptedModel(prob_dist(garden_path), 6)
    three = beam_search(model, src, lens, DecodeConfig(beam_size=3, alpha=0.0, nbest=3))
    assert model.calls == 3  # the third best needs one more step
    assert three.tokens[0][:2] == [[B], [A]]
    assert three.tokens[0][2] in ([A, A], [A, B])
    assert three.scores[0][2] == pytest.approx(math.log(0.6 * 0.33), abs=1e-6)


@pytest.mark.parametrize("beam_size", [0, 1, 3, 5])  # 0 stands for greedy
def test_batch_equals_one_by_one(beam_size: int) -> None:
    model = ScriptedModel(table_dist(), 8)
    sents, lens = [0, 1, 2, 3], [4, 1, 6, 3]

    def run(src: Tensor, src_lens: Tensor):
        if beam_size == 0:
            return greedy_search(model, src, src_lens, DecodeConfig(max_len_a=1.0, max_len_b=5))
        return beam_search(model, src, src_lens,
                           DecodeConfig(beam_size=beam_size, alpha=0.6, max_len_a=1.0, max_len_b=5, nbest=beam_size))

    together = run(*batch(sents, lens))
    for i, (s, n) in enumerate(zip(sents, lens, strict=True)):
        alone = run(*batch([s], [n]))
        assert together.tokens[i] == alone.tokens[0]
        assert together.scores[i] == alone.scores[0]
        for x, y in zip(together.attention[i], alone.attention[0], strict=True):
            assert torch.equal(x, y)


def test_nbest_sorted_distinct_and_rescored() -> None:
    model = ScriptedModel(table_dist(), 8)
    src, lens = batch([0, 1, 2, 3], [2, 4, 3, 5])
    alpha = 0.6
    out = beam_search(model, src, lens, DecodeConfig(beam_size=5, alpha=alpha, max_len_a=1.0, max_len_b=4, nbest=5))
    limits = max_output_length(lens, 1.0, 4).tolist()
    for s in range(4):
        toks, scores = out.tokens[s], out.scores[s]
        assert len(toks) == 5
        assert len({tuple(t) for t in toks}) == 5
        assert scores == sorted(scores, reverse=True)
        for t, score in zip(toks, scores, strict=True):
            with_eos = len(t) < limits[s]
            lp = length_penalty(len(t) + int(with_eos), alpha).item()
            assert score == pytest.approx(log_prob_sum(model.dist, s, t, with_eos) / lp, abs=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 1.5])
@pytest.mark.parametrize("nbest", [3, 10])
def test_wide_beam_finds_exact_nbest(alpha: float, nbest: int) -> None:
    """With K >= every live prefix (4 ** 2), beam search is exhaustive up to the limit of 3. PAD and BOS are
    never emitted, however likely the model makes them: the words are UNK and three more."""
    vocab, limit = 7, 3
    dist = table_dist(n_sent=1, vocab=vocab, steps=4, seed=1)
    model = ScriptedModel(dist, vocab)
    words = [t for t in range(vocab) if t not in (EOS, PAD, BOS)]
    hyps = [(list(p), True) for n in range(limit) for p in itertools.product(words, repeat=n)]
    hyps += [(list(p), False) for p in itertools.product(words, repeat=limit)]
    scored = sorted(((log_prob_sum(dist, 0, t, e) / length_penalty(len(t) + e, alpha).item(), t)
                     for t, e in hyps), key=lambda h: -h[0])
    src, lens = batch([0], [2])
    out = beam_search(model, src, lens,
                      DecodeConfig(beam_size=20, alpha=alpha, max_len_a=0.0, max_len_b=limit, nbest=nbest))
    assert out.tokens[0] == [t for _, t in scored[:nbest]]
    assert out.scores[0] == pytest.approx([s for s, _ in scored[:nbest]], abs=1e-5)


def short_or_long(prefix: tuple[int, ...]) -> dict[int, float]:
    if prefix == ():
        return {A: 0.55, B: 0.45}
    if prefix[0] == A or len(prefix) == 4:
        return {EOS: 1.0}
    return {B: 1.0}


def test_length_penalty_values() -> None:
    assert length_penalty(torch.tensor([1, 7, 30]), 0.0).tolist() == [1.0, 1.0, 1.0]
    assert length_penalty(torch.tensor([1, 7]), 1.0).tolist() == [1.0, 2.0]
    assert length_penalty(7, 2.0).item() == pytest.approx(4.0)


def test_length_penalty_changes_the_winner() -> None:
    src, lens = batch([0], [3])
    kwargs = dict(beam_size=2, max_len_a=0.0, max_len_b=8)
    plain = beam_search(ScriptedModel(prob_dist(short_or_long), 6), src, lens, DecodeConfig(alpha=0.0, **kwargs))
    assert plain.tokens == [[[A]]]
    assert plain.scores[0][0] == pytest.approx(math.log(0.55), abs=1e-6)
    # alpha = 2: A-EOS scores log(.55) / (7/6)^2 = -0.44, B-B-B-B-EOS log(.45) / (10/6)^2 = -0.29.
    # A bound taken at the current length (-0.80 / (7/6)^2 = -0.59) would wrongly stop at A.
    model = ScriptedModel(prob_dist(short_or_long), 6)
    penalised = beam_search(model, src, lens, DecodeConfig(alpha=2.0, **kwargs))
    assert penalised.tokens == [[[B, B, B, B]]]
    assert penalised.scores[0][0] == pytest.approx(math.log(0.45) / (10 / 6) ** 2, abs=1e-6)
    assert greedy_search(model, src, lens, DecodeConfig()).tokens == [[[A]]]


def test_max_output_length() -> None:
    assert max_output_length(torch.tensor([2, 4, 7]), 1.5, 1).tolist() == [4, 7, 11]
    assert max_output_length(torch.tensor([3]), 0.0, 0).tolist() == [1]


def test_length_limit_without_eos() -> None:
    src, lens = batch([0, 1, 2], [2, 6, 4])  # limits 1.5 * S + 2 = 5, 11, 8
    model = ScriptedModel(table_dist(n_sent=3, eos=False), 8)
    greedy = greedy_search(model, src, lens, DecodeConfig(max_len_a=1.5, max_len_b=2))
    assert [len(t[0]) for t in greedy.tokens] == [5, 11, 8]
    assert model.rows == [3] * 5 + [2] * 3 + [1] * 3  # finished sentences leave the batch

    model.rows.clear()
    beam = beam_search(model, src, lens, DecodeConfig(beam_size=3, alpha=0.6, max_len_a=1.5, max_len_b=2, nbest=3))
    assert [[len(t) for t in toks] for toks in beam.tokens] == [[5] * 3, [11] * 3, [8] * 3]
    assert [[a.shape[0] for a in att] for att in beam.attention] == [[5] * 3, [11] * 3, [8] * 3]
    assert model.rows == [9] * 5 + [6] * 3 + [3] * 3


def eos_after_own_id(sent: int, prefix: tuple[int, ...]) -> Tensor:
    """Sentence s may emit EOS only after s tokens, and then very likely does."""
    probs = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.4, 0.3, 0.2, 0.1])
    if len(prefix) >= sent:
        probs = 0.05 * probs
        probs[EOS] = 0.95
    return probs.log()


def test_stops_when_every_sentence_is_done() -> None:
    src, lens = batch([1, 2, 4], [3, 3, 3])  # limits 1.5 * 3 + 10 = 14
    model = ScriptedModel(eos_after_own_id, 8)
    out = beam_search(model, src, lens, DecodeConfig(beam_size=2, alpha=0.0, nbest=2))
    assert [[len(t) for t in toks] for toks in out.tokens] == [[1, 1], [2, 2], [4, 4]]
    assert model.rows == [6, 6, 4, 2, 2]
    model.rows.clear()
    greedy = greedy_search(model, src, lens, DecodeConfig())
    assert greedy.tokens == [[[4]], [[4, 4]], [[4, 4, 4, 4]]]
    assert model.rows == [3, 3, 2, 1, 1]


def test_attention_shapes_and_rows() -> None:
    model = ScriptedModel(table_dist(), 8)
    src, lens = batch([0, 1, 2, 3], [4, 1, 6, 3])
    limits = max_output_length(lens, 1.0, 5).tolist()
    out = beam_search(model, src, lens, DecodeConfig(beam_size=3, alpha=0.6, max_len_a=1.0, max_len_b=5, nbest=3))
    greedy = greedy_search(model, src, lens, DecodeConfig(max_len_a=1.0, max_len_b=5))
    for res in (out, greedy):
        for s, (toks, atts) in enumerate(zip(res.tokens, res.attention, strict=True)):
            for t, att in zip(toks, atts, strict=True):
                rows = len(t) + 1 if len(t) < limits[s] else len(t)
                assert att.shape == (rows, lens[s].item())
                assert torch.allclose(att.sum(1), torch.ones(rows))
                fed = [BOS] + t  # the token fed at each step
                assert att.argmax(1).tolist() == [(i + fed[i]) % lens[s].item() for i in range(rows)]


@pytest.mark.parametrize("kwargs, match", [
    (dict(beam_size=0), "beam_size"),
    (dict(beam_size=3, nbest=0), "nbest"),
    (dict(beam_size=3, nbest=4), "nbest"),
    (dict(alpha=-0.1), "alpha"),
    (dict(max_len_a=-1.0), "max_len_a"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    """Decode settings are checked once, where they are made: a search never starts with bad ones."""
    with pytest.raises(ConfigError, match=match):
        DecodeConfig(**kwargs)


def test_bad_inputs() -> None:
    model = ScriptedModel(table_dist(), 8)
    src, lens = batch([0, 1], [3, 2])
    with pytest.raises(ValueError, match="src_lens"):
        greedy_search(model, src, lens[:1], DecodeConfig())
    with pytest.raises(ValueError, match="src must be"):
        beam_search(model, src[0], lens, DecodeConfig())


class _Mask(NamedTuple):
    mask: torch.Tensor  # (B, S) encoder output: only the mask; also serves as the (empty) decoder state

    def select(self, idx: torch.Tensor) -> _Mask:
        return _Mask(self.mask.index_select(0, idx))


class _PadLover:
    """Prefers PAD, then BOS, then EOS, whatever came before."""

    vocab_size = 6

    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> _Mask:
        return _Mask(torch.arange(src.size(1)) < src_lens.unsqueeze(1))

    def init_state(self, enc: _Mask) -> _Mask:
        return enc

    def decode_step(self, prev: torch.Tensor, enc: _Mask,
                    state: _Mask) -> tuple[torch.Tensor, torch.Tensor, _Mask]:
        logits = torch.tensor([5.0, 0.0, 4.0, 3.0, 1.0, 1.0]).repeat(prev.size(0), 1)  # (N, V)
        attn = enc.mask.float() / enc.mask.sum(1, keepdim=True)  # (N, S)
        return logits.log_softmax(-1), attn, state


def test_search_never_emits_pad_or_bos() -> None:
    src, lens = torch.tensor([[4, 5, 4]]), torch.tensor([3])
    for decode in (DecodeConfig(beam_size=1), DecodeConfig(beam_size=2, nbest=2)):
        out = search(_PadLover(), src, lens, decode)  # type: ignore[arg-type]
        for tokens in out.tokens[0]:
            assert PAD not in tokens and BOS not in tokens
        assert out.tokens[0][0] == []  # EOS at once


def test_coverage_penalty_is_gnmts() -> None:
    """Wu et al. (2016), eq. 14: cp = beta * sum_j log(min(sum_i p_ij, 1.0))."""
    attention = torch.tensor([[0.5, 0.25, 0.25], [0.9, 0.05, 0.05]])  # (t, S): totals 1.4, 0.3, 0.3
    assert coverage_penalty(attention, 0.4) == pytest.approx(0.4 * 2 * math.log(0.3))
    assert coverage_penalty(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 5.0) == 0.0  # everything covered: no penalty


def test_beam_search_adds_the_coverage_penalty_to_finished_hypotheses() -> None:
    decode = DecodeConfig(beam_size=4, nbest=4, alpha=0.6, max_len_a=1.0, max_len_b=4)
    src, lens = batch([0, 1, 2, 3], [3, 5, 2, 7])
    plain = beam_search(ScriptedModel(table_dist(), 8), src, lens, decode)
    beta = 0.7
    penalised = beam_search(ScriptedModel(table_dist(), 8), src, lens, dataclasses.replace(decode, beta=beta))
    compared = 0
    for s in range(4):
        before = {tuple(t): score for t, score in zip(plain.tokens[s], plain.scores[s], strict=True)}
        items = zip(penalised.tokens[s], penalised.scores[s], penalised.attention[s], strict=True)
        for tokens, score, attention in items:
            if tuple(tokens) in before:
                cp = coverage_penalty(attention, beta)
                assert score == pytest.approx(before[tuple(tokens)] + cp, abs=1e-5)
                compared += cp < 0
        assert penalised.scores[s] == sorted(penalised.scores[s], reverse=True)
    assert compared > 4  # penalties were paid
