"""BLEU the way published Multi30k tables score it: lowercased, Moses-tokenized, then sacreBLEU with
``tokenize=none`` (e.g. Wu et al. 2021's text-only Transformer-tiny: 41.02 on test_2016_flickr en-de).
scripts/moses_bleu.py is its command line.

Needs sacremoses (``pip install -e '.[dev]'``). The number is not comparable with seq2seq-evaluate's (cased,
13a on detokenized text): Moses splits more (hyphens, apostrophes), which usually raises BLEU.
"""

from __future__ import annotations

from collections.abc import Sequence

import sacrebleu
from sacremoses import MosesTokenizer


def moses_lower(lines: Sequence[str], lang: str) -> list[str]:
    """Lowercase, then Moses-tokenize (no escaping of & < > ' " into entities)."""
    tokenizer = MosesTokenizer(lang=lang)
    return [tokenizer.tokenize(line.lower(), escape=False, return_str=True) for line in lines]


def moses_bleu(hypotheses: Sequence[str], references: Sequence[str], lang: str) -> tuple[float, str]:
    """Corpus BLEU of lowercased, Moses-tokenized text, with sacreBLEU's own tokenization off: the score
    and sacreBLEU's report line with its signature."""
    bleu = sacrebleu.metrics.BLEU(tokenize="none", force=True)  # force: the text is tokenized on purpose
    result = bleu.corpus_score(moses_lower(hypotheses, lang), [moses_lower(references, lang)])
    return result.score, result.format(width=2, signature=str(bleu.get_signature()))
