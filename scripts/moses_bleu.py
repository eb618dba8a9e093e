"""BLEU the way published Multi30k tables score it: lowercased, Moses-tokenized, then sacreBLEU with
``tokenize=none`` (e.g. Wu et al. 2021's text-only Transformer-tiny: 41.02 on test_2016_flickr en-de).

    python scripts/moses_bleu.py hyp.de data/multi30k/test_2016_flickr.de            # --lang de (default)
    seq2seq-evaluate checkpoint=runs/x/best.pt out=hyp.de && python scripts/moses_bleu.py hyp.de REF

Needs sacremoses (``pip install -e '.[dev]'``). Prints sacreBLEU's report line. The number is not
comparable with seq2seq-evaluate's (cased, 13a on detokenized text): Moses splits more (hyphens,
apostrophes), which usually raises BLEU.
"""

from __future__ import annotations

import argparse
import gzip
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


def read(path: str) -> list[str]:
    """Lines of a UTF-8 text file, plain or gzip (.gz)."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("hypotheses")
    parser.add_argument("reference")
    parser.add_argument("--lang", default="de", help="the target language, for Moses' rules (default: de)")
    args = parser.parse_args()
    hyps, refs = read(args.hypotheses), read(args.reference)
    if len(hyps) != len(refs):
        raise SystemExit(f"error: {args.hypotheses} has {len(hyps)} lines but {args.reference} has {len(refs)}")
    print(f"{moses_bleu(hyps, refs, args.lang)[1]} (lowercased, Moses-tokenized)")


if __name__ == "__main__":
    main()
