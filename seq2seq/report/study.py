"""Measures for comparing attention variants: BLEU by source length, the attention's entropy and how much of
it lies near the diagonal, how far apart its raw scores lie, and paired bootstrap significance (sacreBLEU's
own test).

seq2seq/report/attention_study.py runs the study; these functions are its arithmetic, tested on hand-made
inputs in tests/test_study.py. :func:`measure_scores` watches a trained model's raw scores
(scripts/attention_scores.py).

Shapes: T target length (rows, EOS included), S source length (columns).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import sacrebleu
import torch
from torch import Tensor

if TYPE_CHECKING:
    from seq2seq.inference.translator import Translator

LENGTH_EDGES = (10, 15, 20)  # source subwords: buckets 1-10, 11-15, 16-20, 21+ (Multi30k test: 189, 460, 237, 114)


def length_bucket(length: int, edges: Sequence[int] = LENGTH_EDGES) -> int:
    """The bucket of a source ``length``: 0 for <= edges[0], ..., len(edges) beyond the last edge."""
    return next((i for i, edge in enumerate(edges) if length <= edge), len(edges))


def bucket_labels(edges: Sequence[int] = LENGTH_EDGES) -> list[str]:
    lows = [1] + [e + 1 for e in edges]
    return [f"{lo}-{hi}" for lo, hi in zip(lows, edges, strict=False)] + [f"{lows[-1]}+"]


def bleu_by_length(hypotheses: Sequence[str], references: Sequence[str], src_lengths: Sequence[int],
                   edges: Sequence[int] = LENGTH_EDGES) -> list[tuple[str, int, float | None]]:
    """Corpus BLEU of the sentences in each source-length bucket (Bahdanau et al. 2015, Fig. 2; Luong et al.
    2015, Fig. 6): (label, sentences, BLEU), BLEU None for an empty bucket."""
    buckets: list[list[int]] = [[] for _ in range(len(edges) + 1)]
    for i, n in enumerate(src_lengths):
        buckets[length_bucket(n, edges)].append(i)
    out = []
    for label, members in zip(bucket_labels(edges), buckets, strict=True):
        if not members:
            out.append((label, 0, None))
            continue
        hyp, ref = [hypotheses[i] for i in members], [references[i] for i in members]
        out.append((label, len(members), sacrebleu.corpus_bleu(hyp, [ref]).score))
    return out


def _rows(weights: Tensor) -> Tensor:
    """(T, S) weights with every row rescaled to sum to 1: local-p's rows sum to less (its Gaussian factor),
    and the measures below compare where the weight goes, not how much of it there is."""
    w = weights.double()
    return w / w.sum(-1, keepdim=True).clamp_min(1e-300)


def attention_entropy(weights: Tensor) -> float:
    """Mean over target rows of the entropy -sum_s a_s log a_s (nats) of (T, S) weights, each row rescaled to
    sum to 1: 0 when every row looks at one position, log S when it spreads evenly."""
    w = _rows(weights)
    rows = -(w * torch.log(w.clamp_min(1e-300))).sum(-1)  # (T,) 0 log 0 = 0
    return float(rows.mean())


def diagonal_mass(weights: Tensor, width: int = 1) -> float:
    """Mean over target rows of the weight within ``width`` source positions of the diagonal, the line from the
    first target row at the first source position to the last row at the last position (rows rescaled to sum
    to 1). 1 for a strictly monotone alignment, about (2 width + 1) / S for weights spread evenly."""
    t, s = weights.shape
    centre = torch.arange(t, dtype=torch.float64) * ((s - 1) / max(t - 1, 1))  # (T,)
    distance = (torch.arange(s, dtype=torch.float64).unsqueeze(0) - centre.unsqueeze(1)).abs()  # (T, S)
    return float((_rows(weights) * (distance <= width + 1e-9)).sum(-1).mean())


def score_spread(scores: Tensor) -> tuple[float, float]:
    """How far apart a softmax's inputs lie, for raw attention scores (..., S) before masking and softmax: the
    mean over rows of their standard deviation, and of the gap between the highest score and the next. A gap
    of g gives the top position e^g times the weight of the runner-up, so gaps of tens make the weights
    one-hot and the softmax's gradient vanishes. With one position a row has no spread: both are NaN."""
    rows = scores.detach().double().reshape(-1, scores.size(-1))  # (R, S): a row per query (and head)
    if rows.size(-1) < 2:
        return math.nan, math.nan
    top2 = rows.topk(2, dim=-1).values  # (R, 2)
    return float(rows.std(-1, unbiased=False).mean()), float((top2[:, 0] - top2[:, 1]).mean())


def paired_bootstrap(baseline: tuple[str, Sequence[str]], systems: Sequence[tuple[str, Sequence[str]]],
                     references: Sequence[str], samples: int = 1000) -> dict[str, float]:
    """p-value of each system's BLEU against the baseline's by paired bootstrap resampling (Koehn 2004), as
    sacreBLEU's ``--paired-bs`` computes it (seeded by SACREBLEU_SEED, 12345 by default)."""
    from sacrebleu.significance import PairedTest

    test = PairedTest([baseline, *systems], {"BLEU": sacrebleu.metrics.BLEU()}, [list(references)],
                      test_type="bs", n_samples=samples)
    _, results = test()
    p_values = [r.p_value for r in results["BLEU"][1:]]  # the first result is the baseline's
    return {name: (math.nan if p is None else float(p)) for (name, _), p in zip(systems, p_values, strict=True)}


def seed_paired_bootstrap(baseline: Sequence[Sequence[str]], system: Sequence[Sequence[str]],
                          references: Sequence[str], samples: int = 1000, seed: int = 12345) -> tuple[float, float]:
    """Two-sided p-value that a system's BLEU, averaged over its seeds, differs from the baseline's, and the
    observed difference: Koehn (2004)'s paired bootstrap resampling the *source sentences*. One resample of the
    sentences is applied to every seed's output of both systems, so a sentence's seeds stay together and the
    resampled unit is the sentence, the one independent thing here (pooling seeds x sentences would count each
    sentence once per seed). The p-value is conditional on these seeds; the seeds' spread is reported apart.
    From per-sentence BLEU statistics; the p-value counts the centred resampled differences at least as large
    as the observed one, plus one, over the resamples plus one (sacreBLEU's form, with >= for >)."""
    bleu = sacrebleu.metrics.BLEU()
    refs = [list(references)]

    def statistics_of(runs: Sequence[Sequence[str]]) -> np.ndarray:  # (seeds, sentences, statistics)
        return np.array([bleu._extract_corpus_statistics(list(h), refs) for h in runs], dtype=np.int64)

    base, mine = statistics_of(baseline), statistics_of(system)

    def mean_bleu(stats: np.ndarray, rows: np.ndarray) -> float:
        return float(np.mean([bleu._compute_score_from_stats(s[rows].sum(0).tolist()).score for s in stats]))

    everything = np.arange(len(references))
    observed = mean_bleu(mine, everything) - mean_bleu(base, everything)
    rng = np.random.default_rng(seed)
    diffs = np.empty(samples)
    for b in range(samples):
        rows = rng.integers(0, len(references), len(references))
        diffs[b] = mean_bleu(mine, rows) - mean_bleu(base, rows)
    extreme = int(np.sum(np.abs(diffs - diffs.mean()) >= abs(observed)))  # at least as extreme: equal -> p = 1
    return (extreme + 1) / (samples + 1), observed


def seeds_apart(baseline: Sequence[float], system: Sequence[float]) -> str:
    """The between-seed view: whether every seed of the system scores above (or below) every seed of the
    baseline, or their ranges overlap."""
    if min(system) > max(baseline):
        return "every seed above"
    if max(system) < min(baseline):
        return "every seed below"
    return "ranges overlap"


def measure_scores(translator: Translator, checkpoint: str, sentences: list[str]) -> str:
    """One line about the raw attention scores of ``translator`` (loaded from ``checkpoint``) on ``sentences``,
    translated greedily one at a time (no padding in a row) while its score function is watched: the mean
    :func:`score_spread`, the mean :func:`attention_entropy`, and for Luong's general score the spectral norm of
    its bilinear matrix W_a. The watch is removed afterwards."""
    from seq2seq.nn.attention import GeneralAttention

    name = translator.config.model.attention
    attention = translator.model.decoder.attention
    if attention is None:
        return f"{checkpoint}: {name}, no attention scores"
    scores: list[Tensor] = []
    score = attention.score  # the bound method; the instance attribute below shadows it while we watch

    def watched(query: Tensor, keys: Tensor) -> Tensor:
        out = score(query, keys)
        scores.append(out.detach())
        return out

    attention.score = watched
    try:
        entropies = []
        greedy = translator.with_decode(beam_size=1, nbest=1)
        for sentence in sentences:  # one at a time: no padded positions in a row
            result = translator.translations([sentence], greedy)[0]
            if result.attention:
                entropies.append(attention_entropy(result.attention[0]))
    finally:
        del attention.score
    spreads = [score_spread(s) for s in scores if s.size(-1) > 1]
    if not spreads:
        return f"{checkpoint}: {name}, no source longer than one subword"
    std = statistics.fmean(s for s, _ in spreads)
    gap = statistics.fmean(g for _, g in spreads)
    line = (f"{checkpoint}: {name}, {len(sentences)} sentences: score sd {std:.2f}, top-2 gap {gap:.2f}, "
            f"entropy {statistics.fmean(entropies):.2f} nats")
    if isinstance(attention, GeneralAttention):  # the bilinear matrix of h_t^T W_a h_s
        line += f", ||W_a||_2 {float(torch.linalg.matrix_norm(attention.w_a.weight.detach(), 2)):.1f}"
    return line
