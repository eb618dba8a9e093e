"""Attention of one translation as text (a table of percentages) or as a heatmap (PNG, or on given axes).

``attention`` is (T', S): a row per emitted target token, plus one for EOS when the hypothesis ended
with it (T' = T + 1), a column per source subword. matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seq2seq.errors import ConfigError, DataError

EOS_LABEL = "</s>"


def row_labels(tgt_pieces: Sequence[str], rows: int) -> list[str]:
    """Target pieces, with EOS_LABEL appended when the attention has a row for EOS."""
    return [*tgt_pieces, EOS_LABEL][:rows]


def _width(text: str) -> int:
    """Columns a terminal uses for ``text`` (wide East Asian characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int, right: bool) -> str:
    space = " " * max(0, width - _width(text))
    return space + text if right else text + space


def format_attention(src_pieces: Sequence[str], tgt_pieces: Sequence[str], attention: Tensor) -> str:
    """A table: a row per target piece (and EOS), a column per source piece, weights in percent.

    Example::

             ▁a  ▁b  ▁c
        ▁c    0   2  97
        ▁b    1  95   3
        ▁a   96   3   0
        </s> 40  30  30
    """
    labels = row_labels(tgt_pieces, attention.size(0))
    label_w = max([_width(x) for x in labels] + [1])
    widths = [max(3, _width(p)) for p in src_pieces]
    header = " ".join(_pad(p, w, True) for p, w in zip(src_pieces, widths, strict=True))
    lines = [" " * label_w + " " + header]
    percent = (attention.float() * 100).round().int().tolist()  # (T', S)
    for label, row in zip(labels, percent, strict=True):
        cells = " ".join(_pad(str(v), w, True) for v, w in zip(row, widths, strict=True))
        lines.append(_pad(label, label_w, False) + " " + cells)
    return "\n".join(line.rstrip() for line in lines) + "\n"


def require_matplotlib() -> None:
    """Fail now, before any work, when the heat-maps could not be drawn later."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError("attention_plots needs matplotlib: pip install 'seq2seq[plot]' (or matplotlib), "
                          "or leave attention_plots unset") from None


def draw_heatmap(ax: Any, src_pieces: Sequence[str], tgt_pieces: Sequence[str], attention: Tensor | Sequence,
                 title: str | None = None, label_size: float | None = None, title_size: float = 9) -> Any:
    """Draw the attention (T', S) on the matplotlib axes ``ax``: target pieces down, source pieces across,
    weights 0 to 1 on one colour scale; ``label_size`` for the pieces (matplotlib's default: None). The image,
    for a colorbar. ``save_heatmap`` draws one translation with it, the attention study a grid of them."""
    weights = torch.as_tensor(attention).float()
    labels = row_labels(tgt_pieces, weights.size(0))
    rows, cols = weights.shape
    size = {} if label_size is None else {"fontsize": label_size}
    image = ax.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(cols), labels=[_literal(p) for p in src_pieces], rotation=90, **size)
    ax.set_yticks(range(rows), labels=[_literal(p) for p in labels], **size)
    if title:
        ax.set_title(_literal(title[:80]), fontsize=title_size)
    return image


def save_heatmap(path: str | Path, src_pieces: Sequence[str], tgt_pieces: Sequence[str], attention: Tensor,
                 title: str | None = None, ylabel: str = "target") -> None:
    """Write the attention as a PNG heatmap: target pieces down (``ylabel``; the source pieces again for an
    encoder's self-attention), source pieces across."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols = attention.shape
    fig = Figure(figsize=(min(30.0, 2.0 + 0.35 * cols), min(30.0, 1.5 + 0.3 * rows)), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend, without touching pyplot's global state
    ax = fig.add_subplot()
    image = draw_heatmap(ax, src_pieces, tgt_pieces, attention, title)
    ax.set_xlabel("source")
    ax.set_ylabel(ylabel)
    fig.colorbar(image, ax=ax, fraction=0.05)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Glyph .* missing")  # scripts the default font lacks
            fig.savefig(path, dpi=100)
    except OSError as err:
        raise DataError(f"cannot write attention plot {path}: {err.strerror}; "
                        "choose another attention_plots=") from None


def _literal(text: str) -> str:
    """Text that matplotlib shows as is (a pair of ``$`` would start mathtext)."""
    return text.replace("$", r"\$")
