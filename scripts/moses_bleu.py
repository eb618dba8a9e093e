"""BLEU the way published Multi30k tables score it: lowercased, Moses-tokenized, then sacreBLEU with
``tokenize=none`` (e.g. Wu et al. 2021's text-only Transformer-tiny: 41.02 on test_2016_flickr en-de).

    python scripts/moses_bleu.py hyp.de data/multi30k/test_2016_flickr.de            # --lang de (default)
    seq2seq-evaluate checkpoint=runs/x/best.pt out=hyp.de && python scripts/moses_bleu.py hyp.de REF

Needs sacremoses (``pip install -e '.[dev]'``). Prints sacreBLEU's report line. The number is not
comparable with seq2seq-evaluate's (cased, 13a on detokenized text): Moses splits more (hyphens,
apostrophes), which usually raises BLEU. The scoring is seq2seq/report/moses.py.
"""

from __future__ import annotations

import argparse

from seq2seq.errors import DataError
from seq2seq.files import read_lines
from seq2seq.report.moses import moses_bleu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("hypotheses")
    parser.add_argument("reference")
    parser.add_argument("--lang", default="de", help="the target language, for Moses' rules (default: de)")
    args = parser.parse_args()
    try:
        hyps, refs = read_lines(args.hypotheses), read_lines(args.reference)
    except DataError as err:
        raise SystemExit(f"error: {err}") from None
    if len(hyps) != len(refs):
        raise SystemExit(f"error: {args.hypotheses} has {len(hyps)} lines but {args.reference} has {len(refs)}")
    print(f"{moses_bleu(hyps, refs, args.lang)[1]} (lowercased, Moses-tokenized)")


if __name__ == "__main__":
    main()
