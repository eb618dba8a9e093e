"""seq2seq-translate's input and output: one answer per input line, the interactive prompt, attention as a text
table on stderr and as heatmap files (the last two also for seq2seq-evaluate).

This is the command line's own side, split from cli.py for length: like cli.py it writes to stdout and
stderr by design; library code below it (translator, decoding) only logs."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path
from typing import Any

from seq2seq.cli.schemas import TranslateConfig
from seq2seq.registry import variant

log = logging.getLogger(__name__)


def attention_maps(translator: Any, result: Any, per_head: bool) -> list[tuple[str, Any]]:
    """("head n", (T+1, S) map) for every head of the best translation when ``per_head`` is set and the model
    has several heads; else nothing (the heads' average is shown anyway)."""
    name = translator.config.model.attention
    if not per_head or not result.attention or variant(name).score_class is None:
        return []
    if not variant(name).heads:
        log.info("per_head=true: %s attention has one head, shown as it is", name)
        return []
    heads = translator.head_attention(result)  # (N, T+1, S)
    return [(f"head {n + 1}", h) for n, h in enumerate(heads)]


def save_plots(directory: str, number: int, source: str, result: Any, heads: list[tuple[str, Any]]) -> None:
    """``{directory}/{number:05d}.png``: the heatmap of the best translation of line ``number`` (the heads'
    average), and ``{number:05d}.head{n}.png`` for each of ``heads``."""
    from seq2seq.report.plot import save_heatmap

    if result.attention:
        save_heatmap(Path(directory) / f"{number:05d}.png", result.src_pieces, result.tgt_pieces[0],
                     result.attention[0], title=source)
    for name, attention in heads:
        save_heatmap(Path(directory) / f"{number:05d}.{name.replace(' ', '')}.png", result.src_pieces,
                     result.tgt_pieces[0], attention, title=f"{name}: {source}")


def answer(translator: Any, cfg: TranslateConfig, line: str, number: int) -> None:
    """Translate one input line and write its answer: one line, or with nbest > 1 a block of
    ``score<TAB>translation`` lines ended by an empty line. Attention goes to stderr."""
    result = translator.translations([line], first_line=number)[0]
    if cfg.decode.nbest == 1:
        sys.stdout.write(result.text + "\n")
    else:
        block = zip(result.scores, result.hypotheses, strict=True)
        sys.stdout.write("".join(f"{s:.4f}\t{h}\n" for s, h in block) + "\n")
    sys.stdout.flush()
    heads = attention_maps(translator, result, cfg.per_head) if cfg.show_attention or cfg.attention_plots else []
    if cfg.show_attention and result.attention:
        from seq2seq.report.plot import format_attention

        for name, attention in [("", result.attention[0]), *heads]:
            table = format_attention(result.src_pieces, result.tgt_pieces[0], attention)
            sys.stderr.write((f"{name}:\n" if name else "") + table + "\n")
        sys.stderr.flush()
    if cfg.attention_plots:
        save_plots(cfg.attention_plots, number, line, result, heads)


def reconfigure_streams() -> None:
    """Bad UTF-8 in becomes U+FFFD and unencodable output '?', never a crash; only \\n ends an input line
    (a lone \\r is part of the sentence)."""
    if isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(errors="replace", newline="\n")
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")


def piped(translator: Any, cfg: TranslateConfig) -> None:
    """Exactly one answer per input line, written as soon as the line is read."""
    for number, line in enumerate(sys.stdin, 1):
        answer(translator, cfg, line.removesuffix("\n").removesuffix("\r"), number)


def interactive(translator: Any, cfg: TranslateConfig) -> None:
    """A prompt with line editing and history (readline); Ctrl-D quits, Ctrl-C clears the line (as a shell)."""
    from seq2seq.inference.translator import SourceTooLong

    try:
        import readline  # noqa: F401  (importing it gives input() line editing)
    except ImportError:
        pass
    prompt = "> " if sys.stdout.isatty() else ""
    print("Type a sentence and press Enter; Ctrl-D quits.", file=sys.stderr, flush=True)
    number = 0
    while True:
        try:
            line = input(prompt)
        except EOFError:
            print(file=sys.stderr)
            return
        except KeyboardInterrupt:
            print(file=sys.stderr, flush=True)  # the typed text is dropped and a fresh prompt comes back
            continue
        number += 1
        try:
            answer(translator, cfg, line, number)
        except SourceTooLong as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
