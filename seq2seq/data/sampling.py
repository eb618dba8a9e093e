"""Subword regularization with draws that are a function of (seed, epoch, sentence) alone.

SentencePiece's own sampler (``encode(enable_sampling=True)``) draws from a generator that it salts per
process: the same seed gives other segmentations in another process, so a resumed run or a second torchrun
process would train on other batches. Here SentencePiece only supplies what is deterministic (its normalizer,
its pieces and their scores, its n-best lists) and the draws come from a counter-based hash of
(seed, sentence, step), so every process, thread and resume draws the same segmentation.

- Unigram, ``nbest=-1``: Kudo (2018), sec. 3.3 / 2.2: sample a segmentation x with probability
  P(x)^alpha / Z over *all* segmentations, by forward-filtering backward-sampling on the lattice of pieces.
  The lattice is SentencePiece's (its ``PopulateNodes``: every vocabulary piece that matches at a position,
  an unknown piece of score min - 10 where no one-character piece does), and so is the forward-filtering
  (``Lattice::Sample``): the distribution is the one SentencePiece samples from. The per-position choice
  probabilities are fixed by the lattice, so they are computed once per corpus; an epoch only walks back.
- Unigram, ``nbest=l > 1``: Kudo (2018)'s l-best sampling: the l best segmentations (SentencePiece's
  deterministic n-best search), one drawn with probability proportional to P(x)^alpha.
- BPE: BPE-dropout (Provilkov et al. 2020, sec. 3): merges are applied in their learnt order, and each
  possible merge is skipped with probability alpha at each step.

Shapes: none; sentences are lists of ids.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Sequence

import numpy as np
import sentencepiece as spm

UNK_PENALTY = 10.0  # SentencePiece's kUnkPenalty: an unknown character scores the lowest piece minus this


def uniforms(seed: int, sentence: int, count: int, start: int = 0) -> list[float]:
    """Numbers ``start`` .. ``start + count - 1`` in [0, 1) of the stream of (seed, sentence): each depends on
    (seed, sentence, position) alone (SplitMix64 of a counter), whatever was drawn before."""
    with np.errstate(over="ignore"):
        z = (np.uint64(seed % 2**64) * np.uint64(0x9E3779B97F4A7C15)
             + np.uint64(sentence) * np.uint64(0xD1B54A32D192ED03)
             + np.arange(start, start + count, dtype=np.uint64) * np.uint64(0x8CB92BA72F3D8DD7))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))).tolist()


class _Vocabulary:
    """The pieces SentencePiece's lattice uses: normal and user-defined ones, with their scores."""

    def __init__(self, proc: spm.SentencePieceProcessor) -> None:
        self.pieces: dict[str, tuple[int, float]] = {}
        for i in range(proc.get_piece_size()):
            if not (proc.is_control(i) or proc.is_unknown(i) or proc.is_unused(i)):
                self.pieces[proc.id_to_piece(i)] = (i, proc.get_score(i))
        self.prefixes = {piece[:k] for piece in self.pieces for k in range(1, len(piece) + 1)}
        self.unk = (proc.unk_id(), min(score for _, score in self.pieces.values()) - UNK_PENALTY)


def edges(text: str, vocab: _Vocabulary) -> list[list[tuple[int, int, float]]]:
    """SentencePiece's lattice of ``text`` (normalized): for each end position, the pieces (start, id, score)
    that end there; an unknown piece covers a character no one-character piece does."""
    n = len(text)
    ends: list[list[tuple[int, int, float]]] = [[] for _ in range(n + 1)]
    for start in range(n):
        single, end = False, start + 1
        while end <= n and text[start:end] in vocab.prefixes:  # no piece continues a string that no piece begins
            found = vocab.pieces.get(text[start:end])
            if found is not None:
                ends[end].append((start, found[0], found[1]))
                single = single or end == start + 1
            end += 1
        if not single:
            ends[start + 1].append((start, *vocab.unk))
    return ends


class Lattice:
    """One sentence's lattice, ready to sample from: for each end position, its choices (start, id) with their
    backward probabilities, cumulated (forward-filtering done once). Flat arrays: a corpus of them is small."""

    __slots__ = ("length", "offsets", "starts", "ids", "cumulative")

    def __init__(self, text: str, vocab: _Vocabulary, alpha: float) -> None:
        n = self.length = len(text)
        ends = edges(text, vocab)
        forward = [0.0] * (n + 1)  # log of the summed weight of every path from the start to each position
        for end in range(1, n + 1):
            forward[end] = _logsumexp([forward[s] + alpha * score for s, _, score in ends[end]])
        self.offsets, self.starts, self.ids, self.cumulative = array("I", [0]), array("H"), array("I"), array("d")
        for end, pieces in enumerate(ends):
            total = 0.0
            for s, i, score in pieces:
                total += math.exp(forward[s] + alpha * score - forward[end])  # P(this piece | a path to end)
                self.starts.append(s)
                self.ids.append(i)
                self.cumulative.append(total)
            self.offsets.append(len(self.ids))

    def sample(self, draws: Sequence[float]) -> list[int]:
        """Walk back from the end, choosing each piece with its backward probability."""
        pos, out, k = self.length, [], 0
        while pos > 0:
            lo, hi = self.offsets[pos], self.offsets[pos + 1]
            pick = min(bisect.bisect_right(self.cumulative, draws[k] * self.cumulative[hi - 1], lo, hi), hi - 1)
            out.append(self.ids[pick])
            pos = self.starts[pick]
            k += 1
        out.reverse()
        return out


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


class Sampler:
    """Segmentations of a fixed list of lines, drawn anew for each seed (one seed per epoch and side)."""

    def __init__(self, model: bytes, lines: Sequence[str], alpha: float, nbest: int, bpe: bool) -> None:
        self.proc = spm.SentencePieceProcessor(model_proto=bytes(model))
        self.alpha, self.nbest, self.bpe = alpha, nbest, bpe
        if bpe:
            self.texts = [self.proc.normalize(line) for line in lines]
            self.ranks = {self.proc.id_to_piece(i): i for i in range(self.proc.get_piece_size())}
        elif nbest == -1:
            vocab = _Vocabulary(self.proc)
            self.lattices = [Lattice(self.proc.normalize(line), vocab, alpha) for line in lines]
        else:
            self.nbests = [self._nbest(line) for line in lines]

    def _nbest(self, line: str) -> tuple[list[list[int]], list[float]]:
        """The l best segmentations and their cumulative sampling weights P(x)^alpha."""
        segmentations = self.proc.nbest_encode_as_ids(line, nbest_size=self.nbest) or [[]]
        logp = [sum(self.proc.get_score(i) for i in ids) for ids in segmentations]
        top = max(logp)
        weights = np.cumsum([math.exp(self.alpha * (lp - top)) for lp in logp]).tolist()
        return segmentations, weights

    def sample(self, seed: int) -> list[list[int]]:
        """One segmentation per line; line i's depends on (seed, i) alone."""
        if self.bpe:
            return [_bpe_dropout(text, self.ranks, self.alpha, seed, i) for i, text in enumerate(self.texts)]
        if self.nbest == -1:
            return [lattice.sample(uniforms(seed, i, lattice.length)) for i, lattice in enumerate(self.lattices)]
        out = []
        for i, (segmentations, weights) in enumerate(self.nbests):
            u = uniforms(seed, i, 1)[0] * weights[-1]
            out.append(segmentations[min(bisect.bisect_right(weights, u), len(weights) - 1)])
        return out


def _bpe_dropout(text: str, ranks: dict[str, int], alpha: float, seed: int, sentence: int) -> list[int]:
    """BPE-dropout (Provilkov et al. 2020): from characters, repeatedly apply the best-ranked merge whose
    result is a piece, each candidate merge dropped with probability ``alpha`` at each step."""
    symbols, drawn, draws = list(text), 0, []
    while len(symbols) > 1:
        candidates = sorted((ranks[a + b], j) for j, (a, b) in enumerate(zip(symbols, symbols[1:]))
                            if a + b in ranks)
        chosen = None
        for _, j in candidates:
            if drawn == len(draws):
                draws += uniforms(seed, sentence, 64, start=drawn)
            drawn += 1
            if draws[drawn - 1] >= alpha:
                chosen = j
                break
        if chosen is None:
            break
        symbols[chosen:chosen + 2] = [symbols[chosen] + symbols[chosen + 1]]
    unk = ranks.get("<unk>", 1)
    return [ranks.get(s, unk) for s in symbols]
