"""The one way to translate: source id lists and decode settings in, per-sentence n-best lists out.

:func:`translate_ids` sorts the sources by length, cuts them into batches of at most
``decode.batch_tokens`` padded tokens, searches each batch (:func:`seq2seq.inference.search.search`) and hands
back every sentence's hypotheses in input order. :func:`detokenize` is the one place subword ids
become text. Training validation, seq2seq-evaluate, seq2seq-translate, the Translator API and the
scripts all decode through here, so they cannot disagree on the same checkpoint.

Shapes: B batch, S source length, T hypothesis length.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from seq2seq.config import DecodeConfig
from seq2seq.data.corpus import pad
from seq2seq.inference.search import StepModel, search

if TYPE_CHECKING:  # the tokenizer (and sentencepiece) is only needed by whoever detokenizes
    from seq2seq.data.tokenizer import Tokenizer


@dataclass
class Hypothesis:
    """One translation of one sentence."""

    tokens: list[int]  # target ids without BOS and EOS
    score: float  # the search's ranking score: length-penalised log-prob (beam) or log-prob sum (greedy)
    attention: Tensor  # (T+1, S) on the CPU: a row per token and EOS (T rows if cut at the length limit)


def length_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Positions 0..N-1 sorted by length (stable) and cut into batches of at most ``batch_tokens``
    padded tokens, counting one extra position per sentence (EOS); a longer sentence goes alone."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        width = lengths[i] + 1  # sorted, so the newest is the longest
        if current and width * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


@torch.inference_mode()
def translate_ids(model: StepModel, sources: Sequence[Sequence[int]], decode: DecodeConfig,
                  progress: Callable[[int], object] | None = None) -> list[list[Hypothesis]]:
    """The ``decode.nbest`` best hypotheses of every source (lists of ids), best first, in input order.

    ``decode.beam_size`` 1 is greedy search. An empty source has no hypotheses. ``model`` (an
    ``nn.Module``) is put in eval mode and fed on its own device. ``progress(n)`` is called after each
    batch with its number of sentences (a tqdm bar's ``update``).
    """
    results: list[list[Hypothesis]] = [[] for _ in sources]
    todo = [i for i, s in enumerate(sources) if len(s)]
    if progress is not None and len(todo) < len(sources):
        progress(len(sources) - len(todo))  # empty sources are done already
    if not todo:
        return results
    model.eval()  # type: ignore[attr-defined]
    device = next(model.parameters()).device  # type: ignore[attr-defined]
    for batch in length_batches([len(sources[i]) for i in todo], decode.batch_tokens):
        positions = [todo[j] for j in batch]
        src, src_lens = pad([sources[i] for i in positions])  # (B, S), (B,)
        out = search(model, src.to(device), src_lens.to(device), decode)
        for row, i in enumerate(positions):
            results[i] = [Hypothesis(tokens, score, attention.cpu()) for tokens, score, attention
                          in zip(out.tokens[row], out.scores[row], out.attention[row], strict=True)]
        if progress is not None:
            progress(len(positions))
    return results


# Everything Python's str.splitlines() breaks at: a translation must stay one line in a file or a pipe.
_LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with every line break character replaced by a space."""
    return _LINE_BREAKS.sub(" ", text)


def detokenize(tokenizer: Tokenizer, hypotheses: Sequence[Sequence[int]]) -> list[str]:
    """Target ids -> text: SentencePiece's decoding, on one line, without surrounding whitespace."""
    return [one_line(text).strip() for text in tokenizer.decode_tgt(hypotheses)]
