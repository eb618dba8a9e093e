"""seq2seq-translate's input and output: one answer per input line, the interactive prompt, attention as a text
table on stderr and as heatmap files (the last two also for seq2seq-evaluate).

This is the command line's own side, split from cli.py for length: like cli.py it writes to stdout and
stderr by design; library code below it (translator, decoding) only logs."""

from __future__ import annotations

import io
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seq2seq.cli.schemas import TranslateConfig
from seq2seq.config import layer_choice

log = logging.getLogger(__name__)


@dataclass
class Heatmap:
    """A map of the best translation shown besides the default one (the top layer's heads' average)."""

    label: str  # "head 1", "layer 2", "layer 2 head 1", "self-attention layer 1": its table's heading and title
    suffix: str  # its file name's part: "head1", "layer2", "layer2.head1", "self.layer1"
    weights: Any  # (T+1, S) a row per target piece and EOS, or (S, S) for the encoder's self-attention
    self_attention: bool = False


def attention_maps(translator: Any, result: Any, cfg: Any) -> list[Heatmap]:
    """The maps of ``result``'s best translation that ``cfg`` asks for besides the default map, from
    ``translator.layer_attention``: with ``attention_layer`` other than last, the heads' average of each layer it
    picks; with ``per_head``, every head of those layers; with ``self_attention``, the same of the encoder's
    self-attention. Nothing is computed when none is asked for."""
    numbered = layer_choice(cfg.attention_layer) != "last"  # else the top layer, as the default map
    layout = translator.model.attention_layout
    several = cfg.per_head and layout.cross_heads > 1
    if cfg.per_head and layout.cross_layers and not several:
        log.info("per_head=true: %s attention has one head, shown as it is", translator.config.model.attention)
    if not result.attention or not (numbered or several or cfg.self_attention):
        return []
    layers = translator.layer_attention(result, 0, cfg.attention_layer, cfg.self_attention)
    maps: list[Heatmap] = []
    for i, heads in layers.cross.items():  # heads (N, T+1, S)
        label = f"layer {i}" if numbered else ""
        maps += _layer_maps(label, label.replace(" ", ""), heads, cfg.per_head, numbered)
    for i, heads in layers.self_attention.items():  # heads (N, S, S)
        maps += _layer_maps(f"self-attention layer {i}", f"self.layer{i}", heads, cfg.per_head, True, True)
    return maps


def _layer_maps(label: str, suffix: str, heads: Any, per_head: bool, average: bool,
                self_attention: bool = False) -> list[Heatmap]:
    """The heads' average of one layer (``average``) and, with ``per_head``, each of its heads (N > 1)."""
    maps = [Heatmap(label, suffix, heads.mean(0), self_attention)] if average else []
    if per_head and heads.size(0) > 1:
        maps += [Heatmap(f"{label} head {n}".strip(), f"{suffix}.head{n}".lstrip("."), h, self_attention)
                 for n, h in enumerate(heads, 1)]
    return maps


def save_plots(directory: str, number: int, source: str, result: Any, maps: list[Heatmap]) -> None:
    """``{directory}/{number:05d}.png``: the heatmap of the best translation of line ``number`` (the heads'
    average of the top layer), and ``{number:05d}.{suffix}.png`` for each of ``maps``."""
    from seq2seq.report.plot import save_heatmap

    if result.attention:
        save_heatmap(Path(directory) / f"{number:05d}.png", result.src_pieces, result.tgt_pieces[0],
                     result.attention[0], title=source)
    for m in maps:
        rows, ylabel = (result.src_pieces, "source") if m.self_attention else (result.tgt_pieces[0], "target")
        save_heatmap(Path(directory) / f"{number:05d}.{m.suffix}.png", result.src_pieces, rows, m.weights,
                     title=f"{m.label}: {source}", ylabel=ylabel)


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
    maps = attention_maps(translator, result, cfg) if cfg.show_attention or cfg.attention_plots else []
    if cfg.show_attention and result.attention:
        from seq2seq.report.plot import format_attention

        sys.stderr.write(format_attention(result.src_pieces, result.tgt_pieces[0], result.attention[0]) + "\n")
        for m in maps:
            rows = result.src_pieces if m.self_attention else result.tgt_pieces[0]
            sys.stderr.write(f"{m.label}:\n" + format_attention(result.src_pieces, rows, m.weights) + "\n")
        sys.stderr.flush()
    if cfg.attention_plots:
        save_plots(cfg.attention_plots, number, line, result, maps)


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
