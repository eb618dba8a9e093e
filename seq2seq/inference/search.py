"""Greedy and batched beam search with the GNMT length and coverage penalties.

Both searches decode the whole batch at once. Live hypotheses are rows of
tensors (B'*K rows for the B' sentences still running, K = beam size); a
sentence leaves the batch as soon as it is finished, and only a hypothesis
that finishes costs per-item Python work.

Shapes: B batch, S source length, K beam, V target vocabulary, t tokens emitted
so far, C = min(2K, K*V) candidates kept per sentence and step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from seq2seq.config import DecodeConfig
from seq2seq.special import BOS, EOS, PAD

NEG_INF = float("-inf")


class StepModel(Protocol):
    """What search needs from a model (seq2seq.nn.model.Seq2Seq implements it)."""

    vocab_size: int

    def encode(self, src: Tensor, src_lens: Tensor) -> Any: ...

    def init_state(self, enc: Any) -> Any: ...

    def decode_step(self, prev: Tensor, enc: Any, state: Any) -> tuple[Tensor, Tensor, Any]: ...


@dataclass
class SearchResult:
    """n-best output per sentence, best first.

    tokens: ``[B][n]`` token ids without BOS and EOS.
    scores: ``[B][n]`` ranking score: length-penalised log-prob sum (beam) or plain sum (greedy).
    attention: ``[B][n]`` FloatTensor (len+1, S_b): one row per emitted token including EOS
        (len rows when the hypothesis hit its length limit without EOS); S_b = true source length.
    """

    tokens: list[list[list[int]]]
    scores: list[list[float]]
    attention: list[list[Tensor]]


def max_output_length(src_lens: Tensor, a: float, b: int) -> Tensor:
    """Per-sentence output limit floor(a * S_b) + b, at least 1: (B,) -> (B,) long."""
    limits = torch.floor(src_lens.to(torch.float64) * a).long() + b  # (B,)
    return limits.clamp(min=1)


def length_penalty(lengths: Tensor | int, alpha: float) -> Tensor:
    """GNMT length penalty ((5 + |Y|) / 6) ** alpha (Wu et al., 2016, eq. 14); alpha = 0 gives 1."""
    lengths = torch.as_tensor(lengths)
    return ((5.0 + lengths.to(torch.float64)) / 6.0) ** alpha


@dataclass
class _Live:
    """Live hypotheses of the B' sentences still running, K rows each (K = 1 for greedy)."""

    active: Tensor  # (B',) index of each running sentence in the batch
    scores: Tensor  # (B', K) cumulative log-prob; -inf marks an empty row
    tokens: Tensor  # (B'K, t) emitted tokens, BOS excluded
    attn: Tensor  # (B'K, t, S) attention of each emitted token
    prev: Tensor  # (B'K,) last token, fed to the next decode_step

    @staticmethod
    def start(batch: int, k: int, src_len: int, device: torch.device) -> _Live:
        """Only the first row of each sentence is live, so the first step does not fill the beam
        with K copies of the same hypothesis."""
        scores = torch.full((batch, k), NEG_INF, device=device)  # (B, K)
        scores[:, 0] = 0.0
        return _Live(
            active=torch.arange(batch, device=device),
            scores=scores,
            tokens=torch.empty(batch * k, 0, dtype=torch.long, device=device),  # (BK, 0)
            attn=torch.empty(batch * k, 0, src_len, device=device),  # (BK, 0, S)
            prev=torch.full((batch * k,), BOS, dtype=torch.long, device=device),  # (BK,)
        )

    def keep(self, done: Tensor, k: int) -> tuple[_Live, Tensor]:
        """Drop the finished sentences (done (B',) bool); also returns the kept rows (B''K,)."""
        kept = (~done).nonzero().squeeze(1)  # (B'',)
        rows = (kept.unsqueeze(1) * k + torch.arange(k, device=kept.device)).view(-1)  # (B''K,)
        return _Live(self.active[kept], self.scores[kept], self.tokens[rows], self.attn[rows],
                     self.prev[rows]), rows


def coverage_penalty(attention: Tensor, beta: float) -> float:
    """GNMT coverage penalty cp = beta * sum_j log(min(sum_i p_ij, 1)) (Wu et al., 2016, eq. 14) of one
    hypothesis' attention (t, S_b) over its true source positions: <= 0, and 0 once every source position has
    had a total weight of 1. A position never attended to is floored at 1e-10 (a model without attention gets
    the same penalty for all its hypotheses)."""
    total = attention.sum(0).clamp(min=1e-10, max=1.0)  # (S_b,)
    return beta * float(total.log().sum())


class _Pool:
    """Per-sentence bookkeeping: length limits and finished hypotheses, kept sorted best first."""

    def __init__(self, src_lens: Tensor, limits: Tensor, nbest: int, alpha: float, beta: float = 0.0) -> None:
        batch = len(limits)
        self.nbest, self.beta = nbest, beta
        self.src_lens = src_lens.tolist()
        self.limits = limits  # (B,)
        self.lp_limit = length_penalty(limits, alpha).to(limits.device)  # (B,)
        self.hyps: list[list[tuple[float, list[int], Tensor]]] = [[] for _ in range(batch)]
        self.count = torch.zeros(batch, dtype=torch.long, device=limits.device)  # (B,)
        # score of the nbest-th finished hypothesis; -inf until there are nbest of them
        self.threshold = torch.full((batch,), NEG_INF, dtype=torch.float64, device=limits.device)  # (B,)

    def add(self, sents: Tensor, scores: Tensor, tokens: Tensor, attn: Tensor) -> None:
        """Store F finished hypotheses: sents (F,), scores (F,), tokens (F, t), attn (F, t, S)."""
        touched = set()
        items = zip(sents.tolist(), scores.tolist(), tokens.tolist(), attn.unbind(0), strict=True)
        for b, score, toks, att in items:
            if toks and toks[-1] == EOS:
                toks = toks[:-1]
            att = att[:, : self.src_lens[b]].clone()  # (t, S_b)
            if self.beta:
                score += coverage_penalty(att, self.beta)
            self.hyps[b].append((score, toks, att))
            touched.add(b)
        for b in touched:
            hyps = self.hyps[b]
            hyps.sort(key=lambda h: -h[0])  # stable: ties keep the order they were found in
            self.count[b] = len(hyps)
            if len(hyps) >= self.nbest:
                self.threshold[b] = hyps[self.nbest - 1][0]

    def result(self) -> SearchResult:
        best = [hyps[: self.nbest] for hyps in self.hyps]
        return SearchResult(
            tokens=[[toks for _, toks, _ in hyps] for hyps in best],
            scores=[[score for score, _, _ in hyps] for hyps in best],
            attention=[[att for _, _, att in hyps] for hyps in best],
        )


def _check_inputs(src: Tensor, src_lens: Tensor) -> None:
    """The tensors' shapes; the settings were checked once, when the DecodeConfig was made."""
    if src.dim() != 2:
        raise ValueError(f"src must be a (B, S) tensor of token ids, got shape {tuple(src.shape)}")
    if tuple(src_lens.shape) != (src.size(0),):
        raise ValueError(f"src_lens must have shape ({src.size(0)},) to match src, "
                         f"got {tuple(src_lens.shape)}")


def _next_log_probs(model: StepModel, prev: Tensor, enc: Any, state: Any) -> tuple[Tensor, Tensor, Any]:
    """One decoder step with PAD and BOS forbidden as outputs: (N, V) log-probs, (N, S) attention, state.

    Training never targets them, yet an undertrained model can give them probability; SentencePiece
    decodes them to nothing, so they would only make n-best entries that read the same (fairseq masks
    them the same way).
    """
    log_probs, attn, state = model.decode_step(prev, enc, state)  # (N, V), (N, S)
    log_probs[:, PAD] = NEG_INF  # in place: search runs in inference mode
    log_probs[:, BOS] = NEG_INF
    return log_probs, attn, state


def search(model: StepModel, src: Tensor, src_lens: Tensor, decode: DecodeConfig) -> SearchResult:
    """Greedy search when ``decode.beam_size`` is 1, else beam search; src (B, S), src_lens (B,)."""
    if decode.beam_size == 1:
        return greedy_search(model, src, src_lens, decode)
    return beam_search(model, src, src_lens, decode)


def _start(model: StepModel, src: Tensor, src_lens: Tensor, k: int) -> tuple[Any, Any, _Live]:
    """Encode once, then expand encoder output and decoder state to K rows per sentence."""
    enc = model.encode(src, src_lens)
    state = model.init_state(enc)
    expand = torch.arange(src.size(0), device=src.device).repeat_interleave(k)  # (BK,)
    if k > 1:
        enc, state = enc.select(expand), state.select(expand)
    return enc, state, _Live.start(src.size(0), k, enc.mask.size(1), src.device)


@torch.inference_mode()
def greedy_search(model: StepModel, src: Tensor, src_lens: Tensor, decode: DecodeConfig) -> SearchResult:
    """Pick the most probable token at each step; src (B, S), src_lens (B,).

    A sentence stops at EOS or after max_output_length tokens (``decode.max_len_a``, ``max_len_b``; the
    beam settings, the penalties among them, are not used). Scores are plain log-prob sums.
    """
    _check_inputs(src, src_lens)
    if src.size(0) == 0:
        return SearchResult([], [], [])
    limits = max_output_length(src_lens, decode.max_len_a, decode.max_len_b).to(src.device)  # (B,)
    pool = _Pool(src_lens, limits, nbest=1, alpha=0.0)
    enc, state, live = _start(model, src, src_lens, 1)
    step = 0
    while True:
        log_probs, attn, state = _next_log_probs(model, live.prev, enc, state)  # (B', V), (B', S)
        tok_lp, tok = log_probs.max(dim=1)  # (B',), (B',)
        live = _Live(live.active, live.scores + tok_lp.unsqueeze(1),
                     torch.cat([live.tokens, tok.unsqueeze(1)], 1),  # (B', t+1)
                     torch.cat([live.attn, attn.unsqueeze(1)], 1), tok)  # (B', t+1, S)
        done = (tok == EOS) | (pool.limits[live.active] <= step + 1)  # (B',)
        if done.any():
            pool.add(live.active[done], live.scores[done, 0], live.tokens[done], live.attn[done])
            if done.all():
                return pool.result()
            live, rows = live.keep(done, 1)
            enc, state = enc.select(rows), state.select(rows)
        step += 1


@torch.inference_mode()
def beam_search(model: StepModel, src: Tensor, src_lens: Tensor, decode: DecodeConfig) -> SearchResult:
    """Batched beam search; src (B, S), src_lens (B,). Returns the ``decode.nbest`` best hypotheses per
    sentence, with beam size K = ``decode.beam_size`` and length penalty ``decode.alpha``.

    Score: log-prob sum / length_penalty(|Y|, alpha), where |Y| counts the emitted tokens
    including EOS, plus the coverage penalty of ``decode.beta`` (:func:`coverage_penalty`; off at 0) once the
    hypothesis has finished. Each step takes the top 2K candidates of a sentence's K*V extensions; those
    ending in EOS among the top K are finished, the best K that do not end in EOS stay live
    (fairseq's scheme; with K = 1 it reproduces greedy_search). A hypothesis that reaches
    max_output_length without EOS is finished there (its step keeps the top K candidates).

    A sentence stops when (a) it reaches its length limit, (b) K hypotheses have finished
    (fairseq's rule), or (c) nbest have finished and no live hypothesis can beat the nbest-th:
    log-probs are <= 0 and the penalty grows with length, so a live hypothesis with sum s can at
    best reach s / length_penalty(limit). Rule (c) is exact, so it only saves steps: the output
    is what (a) and (b) alone would give (the coverage penalty is <= 0, so the bound holds with it). The loop
    ends when every sentence has stopped.
    """
    _check_inputs(src, src_lens)
    if src.size(0) == 0:
        return SearchResult([], [], [])
    k, alpha = decode.beam_size, decode.alpha
    limits = max_output_length(src_lens, decode.max_len_a, decode.max_len_b).to(src.device)  # (B,)
    pool = _Pool(src_lens, limits, decode.nbest, alpha, decode.beta)
    enc, state, live = _start(model, src, src_lens, k)
    step = 0
    while True:
        log_probs, attn, state = _next_log_probs(model, live.prev, enc, state)  # (B'K, V), (B'K, S)
        live, rows, done = _beam_step(live, log_probs, attn, step, k, alpha, pool)
        if done.any():
            if done.all():
                return pool.result()
            live, kept = live.keep(done, k)
            enc, rows = enc.select(kept), rows[kept]
        state = state.select(rows)
        step += 1


def _beam_step(live: _Live, log_probs: Tensor, attn: Tensor, step: int, k: int, alpha: float,
               pool: _Pool) -> tuple[_Live, Tensor, Tensor]:
    """Extend the live hypotheses by one token and move the finished ones to `pool`.

    Returns the next live hypotheses, the row (B'K,) of the current beam each one extends,
    and which sentences are done (B',).
    """
    n_sent, vocab = live.scores.size(0), log_probs.size(1)
    cand = (live.scores.view(-1, 1) + log_probs).view(n_sent, k * vocab)  # (B', K*V)
    top_scores, top_idx = cand.topk(min(2 * k, k * vocab), dim=1)  # (B', C)
    n_cand = top_idx.size(1)
    rows = torch.arange(n_sent, device=cand.device).unsqueeze(1) * k + top_idx // vocab  # (B', C)
    tokens = top_idx % vocab  # (B', C)
    is_eos = tokens == EOS  # (B', C)
    at_limit = pool.limits[live.active] <= step + 1  # (B',)
    finish = (is_eos | at_limit.unsqueeze(1)) & (top_scores > NEG_INF)  # (B', C)
    finish[:, k:] = False  # only the top K candidates can finish
    if finish.any():
        a, c = finish.nonzero(as_tuple=True)  # (F,), (F,)
        src_rows = rows[a, c]  # (F,)
        pool.add(live.active[a], top_scores[a, c] / length_penalty(step + 1, alpha),
                 torch.cat([live.tokens[src_rows], tokens[a, c].unsqueeze(1)], 1),  # (F, t+1)
                 torch.cat([live.attn[src_rows], attn[src_rows].unsqueeze(1)], 1))  # (F, t+1, S)
    # the K best candidates not ending in EOS, in rank order: each row has one EOS candidate,
    # so at most K of the C = 2K (V >= 2) end in EOS and at least K do not
    rank = torch.arange(n_cand, device=cand.device)  # (C,)
    order = (is_eos.long() * n_cand + rank).argsort(dim=1)[:, :k]  # (B', K)
    scores = top_scores.gather(1, order)  # (B', K)
    sel = rows.gather(1, order).view(-1)  # (B'K,)
    tok = tokens.gather(1, order).view(-1)  # (B'K,)
    best_live = scores.max(dim=1).values / pool.lp_limit[live.active]  # (B',) upper bound
    done = at_limit | (pool.count[live.active] >= k) | (best_live <= pool.threshold[live.active])
    nxt = _Live(live.active, scores,
                torch.cat([live.tokens[sel], tok.unsqueeze(1)], 1),  # (B'K, t+1)
                torch.cat([live.attn[sel], attn[sel].unsqueeze(1)], 1), tok)  # (B'K, t+1, S)
    return nxt, sel, done
