"""Why an attention saturates: the spread of its raw scores, before the softmax, on real sentences.

    python scripts/attention_scores.py runs/attention_study/luong_general_s1/best.pt \\
        runs/attention_study/luong_dot_s1/best.pt runs/attention_study/bahdanau_s1/best.pt

Every checkpoint translates the first ``--sentences`` lines of ``--src`` (default: its corpus's validation
split) greedily, one sentence at a time (so no padding enters a row), while the attention's score function
is watched. Printed per checkpoint: the mean per-row standard deviation of the scores, the mean gap between
the top score and the next (seq2seq.report.study.score_spread; a gap g weighs the top position e^g times the
runner-up), the attention's mean entropy in nats, and for Luong's general score the spectral norm of its
bilinear matrix W_a.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seq2seq.config import DataConfig
from seq2seq.inference.translator import Translator
from seq2seq.report.study import measure_scores


def source_sentences(data: DataConfig, src: str | None, count: int) -> list[str]:
    """The first ``count`` lines of ``src``, or of the corpus's validation split."""
    from seq2seq.data.corpus import split_lines
    from seq2seq.files import read_lines

    return read_lines(Path(src))[:count] if src else split_lines(data, data.valid_split, count)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--src", help="source sentences (default: the first checkpoint's validation split)")
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    from seq2seq import cpu
    from seq2seq.errors import Seq2SeqError

    cpu.setup(args.threads)
    try:
        sentences: list[str] | None = None
        for checkpoint in args.checkpoints:
            translator = Translator.from_checkpoint(checkpoint, device="cpu")
            if sentences is None:  # the first checkpoint's corpus, for every checkpoint
                sentences = source_sentences(translator.config.data, args.src, args.sentences)
            print(measure_scores(translator, checkpoint, sentences), flush=True)
    except Seq2SeqError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
