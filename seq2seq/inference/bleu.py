"""Corpus BLEU and chrF with sacreBLEU, on detokenized text, with their signatures (Post 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sacrebleu


@dataclass
class Scores:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    bleu_text: str = ""  # sacreBLEU's own report line, as ``sacrebleu -f text -w 2`` prints it
    chrf_text: str = ""


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str], lowercase: bool = False) -> Scores:
    """Corpus BLEU (13a, cased unless ``lowercase``) and chrF on detokenized text, with signatures."""
    bleu = sacrebleu.metrics.BLEU(lowercase=lowercase)
    chrf = sacrebleu.metrics.CHRF()
    b = bleu.corpus_score(list(hypotheses), [list(references)])
    c = chrf.corpus_score(list(hypotheses), [list(references)])
    b_sig, c_sig = str(bleu.get_signature()), str(chrf.get_signature())
    return Scores(b.score, c.score, b_sig, c_sig, b.format(width=2, signature=b_sig),
                  c.format(width=2, signature=c_sig))
