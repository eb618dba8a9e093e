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
import statistics
import sys
from pathlib import Path

import torch
from torch import Tensor

from seq2seq.config import DataConfig
from seq2seq.inference.translator import Translator
from seq2seq.nn.attention import GeneralAttention


def source_sentences(data: DataConfig, src: str | None, count: int) -> list[str]:
    """The first ``count`` lines of ``src``, or of the corpus's validation split."""
    from seq2seq.data.corpus import corpus_path
    from seq2seq.files import read_lines

    return read_lines(Path(src) if src else corpus_path(data.dir, data.valid_split, data.src_lang))[:count]


def measure(translator: Translator, checkpoint: str, sentences: list[str]) -> str:
    """One line about the attention scores of ``translator`` (loaded from ``checkpoint``) on ``sentences``."""
    from seq2seq.report.study import attention_entropy, score_spread

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
            print(measure(translator, checkpoint, sentences), flush=True)
    except Seq2SeqError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
