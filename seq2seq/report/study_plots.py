"""The attention study's figures (seq2seq/report/attention_study.py): learning curves, BLEU by source length,
and the same test sentences' heat-maps side by side across variants (each drawn by
seq2seq.report.plot.draw_heatmap). Needs matplotlib (the plot or dev extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seq2seq.report.plot import draw_heatmap


def _figure(rows: int = 1, cols: int = 1, figsize: tuple[float, float] = (8, 5)) -> tuple[Any, Any]:
    """A figure on the Agg backend (pyplot's global state untouched) and its rows x cols axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _finish(fig: Any, ax: Any, path: Path, xlabel: str, ylabel: str, title: str) -> None:
    """Labels, grid, legend, and the PNG at ``path``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_curves(rows: list[dict], path: Path) -> None:
    """Validation BLEU (greedy) against epochs, the first seed of each variant. Epochs, not minutes: the runs
    shared the machine, so their minutes depend on what ran beside them."""
    fig, axes = _figure()
    ax = axes[0][0]
    for r in rows:
        _, ys, xs = zip(*r["curve"][0], strict=True)  # (minutes, BLEU, epoch) per validation
        ax.plot(xs, ys, marker=".", label=r["variant"])
    _finish(fig, ax, path, "epoch", "validation BLEU (greedy)",
            f"Multi30k en-de: attention variants (seed {rows[0]['seeds'][0]})")


def plot_by_length(rows: list[dict], path: Path) -> None:
    """Test BLEU by source-length bucket (mean over seeds), as Bahdanau et al. (2015, Fig. 2) plot it."""
    fig, axes = _figure()
    ax = axes[0][0]
    for r in rows:
        labels = [f"{b[0]}\n({b[1]})" for b in r["bleu_by_length"]]
        ax.plot(labels, [b[2] for b in r["bleu_by_length"]], marker="o", label=r["variant"])
    _finish(fig, ax, path, "source length in subwords (sentences)", "test BLEU (beam 5)",
            "BLEU by source length, test_2016_flickr")


def plot_heatmaps(rows: list[dict], path: Path) -> None:
    """One row per variant, one column per test sentence: the best translation's attention (first seed)."""
    with_maps = [r for r in rows if r["heatmaps"]]
    if not with_maps:
        return
    cols = len(with_maps[0]["heatmaps"])
    fig, axes = _figure(len(with_maps), cols, figsize=(5.5 * cols, 4.2 * len(with_maps)))
    for i, r in enumerate(with_maps):
        for j, h in enumerate(r["heatmaps"]):
            draw_heatmap(axes[i][j], h["src"], h["tgt"], h["weights"], f"{r['variant']}, test line {h['line'] + 1}",
                         label_size=6, title_size=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
