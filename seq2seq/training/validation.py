"""Validation: the teacher-forced loss and greedy BLEU / chrF of the validation split.

The translations go through the same path as ``seq2seq-evaluate split=val decode=greedy`` (the
Translator: the same source limit, decoding and detokenizing, then evaluate's scoring), so the BLEU
that picks best.pt is the BLEU that command reports for it.

Shapes: B batch, T target length, V target vocabulary.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch

from seq2seq.config import Config
from seq2seq.data.corpus import Corpus, Example, collate, make_batches
from seq2seq.inference.bleu import corpus_scores
from seq2seq.inference.translator import Translator
from seq2seq.nn.loss import token_loss
from seq2seq.nn.model import Seq2Seq
from seq2seq.training import distributed


@torch.inference_mode()
def validation_loss(model: Seq2Seq, examples: Sequence[Example], batch_tokens: int) -> float:
    """Cross-entropy per target token (no label smoothing), teacher-forced, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    for positions in make_batches(examples, batch_tokens):
        batch = collate([examples[i] for i in positions])
        logits, _ = model(batch.src.to(device), batch.src_lens.to(device), batch.tgt_in.to(device))  # (B, T, V)
        total += float(token_loss(logits, batch.tgt_out.to(device), 0.0))
        tokens += batch.n_tgt_tokens
    return total / max(1, tokens)


def measure(model: Seq2Seq, corpus: Corpus, cfg: Config) -> tuple[dict[str, Any], float]:
    """Loss, perplexity, BLEU and chrF of the validation split (rounded for metrics.jsonl), and the exact BLEU.

    Rank 0 measures; under torchrun the other ranks wait and receive its numbers.
    """
    return distributed.broadcast_object(_measure(model, corpus, cfg) if distributed.is_main() else None)


def _measure(model: Seq2Seq, corpus: Corpus, cfg: Config) -> tuple[dict[str, Any], float]:
    loss = validation_loss(model, corpus.valid, cfg.train.valid_batch_tokens)
    greedy = dataclasses.replace(cfg.decode, beam_size=1, nbest=1)
    sources, references = corpus.valid_lines
    hypotheses = Translator(model, corpus.tokenizer, cfg, greedy).translate(sources)
    scores = corpus_scores(hypotheses, references)
    return {"loss": round(loss, 6), "ppl": round(math.exp(min(loss, 50)), 4), "bleu": round(scores.bleu, 4),
            "chrf": round(scores.chrf, 4)}, scores.bleu
