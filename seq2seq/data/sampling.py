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

The unigram modes' preparation (the lattices, or the n-best lists, of every line) is the slow part; it can be
cached in plain arrays keyed by a fingerprint of what it depends on (``Sampler(cache_dir=...)``), so only the
first start on a corpus pays for it.

Shapes: none; sentences are lists of ids.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
from array import array
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm

from seq2seq.files import atomic_write

log = logging.getLogger(__name__)

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


FORMAT = 1  # of the prepared arrays and their cache: raise it when what they hold or how changes


def _lattices(texts: Sequence[str], vocab: _Vocabulary, alpha: float) -> dict[str, array]:
    """Every line's lattice, ready to sample from (forward-filtering done once): for each end position, its
    choices (start, id) with their backward probabilities, cumulated. Flat arrays over the corpus: line i's
    end positions 0 .. n are the rows ``bounds[i]`` .. ``bounds[i + 1] - 1``, and row r's choices are
    ``offsets[r]`` .. ``offsets[r + 1] - 1`` of ``starts``, ``ids`` and ``cumulative``."""
    bounds, offsets = array("q", [0]), array("q", [0])
    starts, ids, cumulative = array("H"), array("I"), array("d")
    for text in texts:
        n = len(text)
        ends = edges(text, vocab)
        forward = [0.0] * (n + 1)  # log of the summed weight of every path from the start to each position
        for end in range(1, n + 1):
            forward[end] = _logsumexp([forward[s] + alpha * score for s, _, score in ends[end]])
        for end, pieces in enumerate(ends):
            total = 0.0
            for s, i, score in pieces:
                total += math.exp(forward[s] + alpha * score - forward[end])  # P(this piece | a path to end)
                starts.append(s)
                ids.append(i)
                cumulative.append(total)
            offsets.append(len(ids))
        bounds.append(len(offsets) - 1)
    return {"bounds": bounds, "offsets": offsets, "starts": starts, "ids": ids, "cumulative": cumulative}


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _nbests(proc: spm.SentencePieceProcessor, lines: Sequence[str], nbest: int, alpha: float) -> dict[str, array]:
    """Every line's l best segmentations with their cumulative sampling weights P(x)^alpha: line i's are the
    rows ``bounds[i]`` .. ``bounds[i + 1] - 1``, and row r's ids are ``ids[offsets[r]:offsets[r + 1]]``."""
    bounds, offsets, ids, cumulative = array("q", [0]), array("q", [0]), array("I"), array("d")
    for line in lines:
        segmentations = proc.nbest_encode_as_ids(line, nbest_size=nbest) or [[]]
        logp = [sum(proc.get_score(i) for i in seg) for seg in segmentations]
        top = max(logp)
        for seg, weight in zip(segmentations, np.cumsum([math.exp(alpha * (lp - top)) for lp in logp]).tolist()):
            ids.extend(seg)
            offsets.append(len(ids))
            cumulative.append(weight)
        bounds.append(len(offsets) - 1)
    return {"bounds": bounds, "offsets": offsets, "ids": ids, "cumulative": cumulative}


LATTICE_ARRAYS = {"bounds": "q", "offsets": "q", "starts": "H", "ids": "I", "cumulative": "d"}
NBEST_ARRAYS = {"bounds": "q", "offsets": "q", "ids": "I", "cumulative": "d"}


def fingerprint(model: bytes, lines: Sequence[str], alpha: float, nbest: int) -> str:
    """What the prepared arrays are a function of: the model, the lines, alpha, nbest, SentencePiece's version
    (its normalizer and n-best search) and :data:`FORMAT`."""
    h = hashlib.sha256()
    settings = {"format": FORMAT, "alpha": float(alpha).hex(), "nbest": nbest, "spm": spm.__version__}
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(hashlib.sha256(model).digest())
    for line in lines:
        raw = line.encode("utf-8")
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)
    return h.hexdigest()


class CacheError(ValueError):
    """A cached file of prepared arrays that is not what it should be."""


def _check(arrays: dict[str, np.ndarray], lines: int, vocab_size: int, lattice: bool) -> None:
    """Raise :class:`CacheError` unless ``arrays`` are consistent prepared arrays of ``lines`` lines: every
    index in range, every walk back through a lattice ending at position 0, the cumulative weights ordered
    (a lattice's summing to 1 at each position)."""
    bounds, offsets, ids, cumulative = arrays["bounds"], arrays["offsets"], arrays["ids"], arrays["cumulative"]
    rows = len(offsets) - 1
    if len(bounds) != lines + 1 or bounds[0] != 0 or bounds[-1] != rows or np.any(np.diff(bounds) < 1):
        raise CacheError(f"its line bounds do not cover {lines} lines")
    per_row = np.diff(offsets)
    if offsets[0] != 0 or np.any(per_row < 0):
        raise CacheError("its row offsets are out of order")
    if np.any(ids >= vocab_size):
        raise CacheError(f"it holds ids beyond the vocabulary's {vocab_size}")
    if not np.all(np.isfinite(cumulative)) or np.any(cumulative < 0):
        raise CacheError("it holds weights that are negative or not finite")
    if lattice:  # one weight per choice, cumulated within a row (an end position)
        if not offsets[-1] == len(arrays["starts"]) == len(ids) == len(cumulative):
            raise CacheError("its row offsets do not match its choices")
        position = np.arange(rows) - np.repeat(bounds[:-1], np.diff(bounds))  # each row's end position
        if np.any((position == 0) != (per_row == 0)):
            raise CacheError("some position has no piece ending there")
        if np.any(arrays["starts"] >= np.repeat(position, per_row)):
            raise CacheError("a piece starts at or after its end")
        filled = per_row > 0
        if np.any(np.abs(cumulative[offsets[1:][filled] - 1] - 1.0) > 1e-6):  # each row's last, its total
            raise CacheError("its choice probabilities at some position do not sum to 1")
        fresh = np.zeros(len(cumulative), dtype=bool)  # where a row's cumulation starts again
        fresh[offsets[:-1][filled]] = True
    else:  # one weight per segmentation, cumulated within a line
        if offsets[-1] != len(ids) or len(cumulative) != rows:
            raise CacheError("its row offsets do not match its segmentations")
        fresh = np.zeros(rows, dtype=bool)
        fresh[bounds[:-1]] = True
    if np.any((np.diff(cumulative) < 0) & ~fresh[1:]):
        raise CacheError("its cumulative weights decrease")


class Sampler:
    """Segmentations of a fixed list of lines, drawn anew for each seed (one seed per epoch and side).

    ``cache_dir``: where the prepared lattices / n-best lists are kept, as ``sampling-<fingerprint>.npz``
    (plain arrays, loaded without pickle and checked; a file that fails the checks is prepared anew and
    rewritten), so only the first start on a corpus prepares them. None: prepare them every time."""

    def __init__(self, model: bytes, lines: Sequence[str], alpha: float, nbest: int, bpe: bool,
                 cache_dir: str | Path | None = None) -> None:
        self.proc = spm.SentencePieceProcessor(model_proto=bytes(model))
        self.alpha, self.nbest, self.bpe = alpha, nbest, bpe
        if bpe:
            self.texts = [self.proc.normalize(line) for line in lines]
            self.ranks = {self.proc.id_to_piece(i): i for i in range(self.proc.get_piece_size())}
            return
        lattice = nbest == -1
        schema = LATTICE_ARRAYS if lattice else NBEST_ARRAYS
        path = key = None
        arrays = None
        if cache_dir is not None:
            key = fingerprint(bytes(model), lines, alpha, nbest)
            path = Path(cache_dir) / f"sampling-{key[:20]}.npz"
            arrays = self._load(path, key, schema, len(lines), lattice)
        if arrays is None:
            if lattice:
                arrays = _lattices([self.proc.normalize(line) for line in lines], _Vocabulary(self.proc), alpha)
            else:
                arrays = _nbests(self.proc, lines, nbest, alpha)
            if path is not None:
                self._save(path, key, arrays, schema)
        self.arrays = arrays

    def _load(self, path: Path, key: str, schema: dict[str, str], lines: int,
              lattice: bool) -> dict[str, array] | None:
        """The prepared arrays cached at ``path``; None when there are none or they fail a check."""
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                if set(npz.files) != {*schema, "key"}:
                    raise CacheError(f"it holds arrays {sorted(npz.files)}")
                if npz["key"].shape != () or str(npz["key"]) != key:
                    raise CacheError("it was made from other data or settings")
                loaded = {name: npz[name] for name in schema}
            for name, code in schema.items():
                if loaded[name].dtype != np.dtype(code) or loaded[name].ndim != 1:
                    raise CacheError(f"its {name} is {loaded[name].dtype} of {loaded[name].ndim} dimension(s)")
            _check(loaded, lines, self.proc.get_piece_size(), lattice)
        except Exception as err:  # a damaged cache file is never trusted and never fatal
            log.warning("subword sampling cache %s is unusable (%s: %s); preparing it again", path,
                        type(err).__name__, err)
            return None
        log.info("subword sampling: reusing the prepared %s from %s", "lattices" if lattice else "n-best lists",
                 path)
        arrays = {}
        for name, code in schema.items():  # one copy at a time: the memory needed is the arrays and their largest
            arrays[name] = array(code)
            arrays[name].frombytes(memoryview(loaded.pop(name)).cast("B"))
        return arrays

    @staticmethod
    def _save(path: Path, key: str, arrays: dict[str, array], schema: dict[str, str]) -> None:
        """Cache the prepared arrays (atomically: a kill leaves the old file or none); a failure only warns."""
        plain = {name: np.frombuffer(arrays[name], dtype=np.dtype(code)) for name, code in schema.items()}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f: np.savez(f, key=np.array(key), **plain))
            log.info("subword sampling: prepared, and cached in %s for the next start", path)
        except OSError as err:
            log.warning("cannot cache the subword sampler's preparation in %s (%s); the next start prepares it "
                        "again", path, err)

    def sample(self, seed: int) -> list[list[int]]:
        """One segmentation per line; line i's depends on (seed, i) alone."""
        if self.bpe:
            return [_bpe_dropout(text, self.ranks, self.alpha, seed, i) for i, text in enumerate(self.texts)]
        a = self.arrays
        bounds, offsets, ids, cumulative = a["bounds"], a["offsets"], a["ids"], a["cumulative"]
        out = []
        if self.nbest == -1:  # walk back from the end, choosing each piece with its backward probability
            starts = a["starts"]
            for i in range(len(bounds) - 1):
                row = bounds[i]
                pos = bounds[i + 1] - 1 - row
                draws, pieces, k = uniforms(seed, i, pos), [], 0
                while pos > 0:
                    lo, hi = offsets[row + pos], offsets[row + pos + 1]
                    pick = min(bisect.bisect_right(cumulative, draws[k] * cumulative[hi - 1], lo, hi), hi - 1)
                    pieces.append(ids[pick])
                    pos = starts[pick]
                    k += 1
                pieces.reverse()
                out.append(pieces)
            return out
        for i in range(len(bounds) - 1):
            lo, hi = bounds[i], bounds[i + 1]
            u = uniforms(seed, i, 1)[0] * cumulative[hi - 1]
            pick = min(bisect.bisect_right(cumulative, u, lo, hi), hi - 1)
            out.append(ids[offsets[pick]:offsets[pick + 1]].tolist())
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
