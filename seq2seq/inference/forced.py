"""Force-decode scoring: the model's log-probability of given translations (seq2seq-score).

Each target is fed to the decoder one token at a time, through the same ``decode_step`` search uses,
and the log-probabilities of its tokens and of EOS are summed: log P(y | x) = sum_t log p(y_t | y_<t, x),
t = 1..|y|+1. For a hypothesis of beam search that ended in EOS this is its score with the length
penalty off (``decode.alpha=0``). Sources are tokenized and cut to the model's limit exactly as the
Translator does; any step model scores (an ensemble, an int8 model).

Shapes: B batch, S source length, T target length + 1 (EOS), V target vocabulary.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from seq2seq.data.corpus import pad
from seq2seq.inference.decoding import length_batches
from seq2seq.inference.search import StepModel
from seq2seq.inference.translator import Translator
from seq2seq.special import BOS, EOS

log = logging.getLogger(__name__)


@dataclass
class PairScore:
    """A target's log-probability given its source."""

    logprob: float  # sum over the target's tokens and EOS (-inf for an empty source)
    tokens: int  # target subword tokens + 1 (EOS): what the sum runs over

    @property
    def per_token(self) -> float:
        return self.logprob / self.tokens


@torch.inference_mode()
def force_decode(model: StepModel, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                 batch_tokens: int) -> list[float]:
    """log P(target + EOS | source) of every pair (id lists), in input order; -inf for an empty source."""
    sums = [float("-inf")] * len(sources)
    todo = [i for i, s in enumerate(sources) if len(s)]
    if not todo:
        return sums
    model.eval()  # type: ignore[attr-defined]
    device = next(model.parameters()).device  # type: ignore[attr-defined]
    widths = [max(len(sources[i]), len(targets[i]) + 1) for i in todo]
    for batch in length_batches(widths, batch_tokens):
        positions = [todo[j] for j in batch]
        src, src_lens = pad([sources[i] for i in positions])  # (B, S), (B,)
        gold, gold_lens = pad([[*targets[i], EOS] for i in positions])  # (B, T), (B,)
        src, gold = src.to(device), gold.to(device)
        prev = torch.cat([torch.full_like(gold[:, :1], BOS), gold[:, :-1]], 1)  # (B, T) teacher forcing
        enc = model.encode(src, src_lens.to(device))
        state = model.init_state(enc)
        total = torch.zeros(len(positions), dtype=torch.float64, device=device)  # (B,)
        for t in range(gold.size(1)):
            log_probs, _, state = model.decode_step(prev[:, t], enc, state)  # (B, V)
            token_lp = log_probs.gather(1, gold[:, t:t + 1]).squeeze(1)  # (B,)
            live = (gold_lens.to(device) > t)  # (B,) padding after EOS adds nothing
            total += torch.where(live, token_lp, torch.zeros_like(token_lp)).to(torch.float64)
        for row, i in enumerate(positions):
            sums[i] = float(total[row])
    return sums


def score_pairs(translator: Translator, sources: Sequence[str], targets: Sequence[str],
                batch_tokens: int, first_line: int = 1) -> list[PairScore]:
    """The translator's model's log-probability of each target given its source (raw text), in order."""
    src_ids, _ = translator.encode(sources, first_line)
    tgt_ids = translator.tokenizer.encode_tgt(targets)
    empty = [first_line + i for i, ids in enumerate(src_ids) if not ids]
    if empty:
        log.warning("%d empty source(s) scored -inf (line %s)", len(empty), ", ".join(map(str, empty[:5])))
    sums = force_decode(translator.model, src_ids, tgt_ids, batch_tokens)
    return [PairScore(s, len(ids) + 1) for s, ids in zip(sums, tgt_ids, strict=True)]
