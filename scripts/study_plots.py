"""The attention study's figures (scripts/compare_attention.py): learning curves, BLEU by source length, and
the same test sentences' heat-maps side by side across variants."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> None:
    """Labels, grid, legend, and the PNG at ``path``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def plot_curves(rows: list[dict], path: Path) -> None:
    """Validation BLEU (greedy) against epochs, the first seed of each variant. Epochs, not minutes: the runs
    shared the machine, so their minutes depend on what ran beside them."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        _, ys, xs = zip(*r["curve"][0], strict=True)  # (minutes, BLEU, epoch) per validation
        ax.plot(xs, ys, marker=".", label=r["variant"])
    _finish(fig, ax, path, "epoch", "validation BLEU (greedy)",
            f"Multi30k en-de: attention variants (seed {rows[0]['seeds'][0]})")


def plot_by_length(rows: list[dict], path: Path) -> None:
    """Test BLEU by source-length bucket (mean over seeds), as Bahdanau et al. (2015, Fig. 2) plot it."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        labels = [f"{b[0]}\n({b[1]})" for b in r["bleu_by_length"]]
        ax.plot(labels, [b[2] for b in r["bleu_by_length"]], marker="o", label=r["variant"])
    _finish(fig, ax, path, "source length in subwords (sentences)", "test BLEU (beam 5)",
            "BLEU by source length, test_2016_flickr")


def plot_heatmaps(rows: list[dict], path: Path) -> None:
    """One row per variant, one column per test sentence: the best translation's attention (first seed)."""
    plt = _pyplot()
    with_maps = [r for r in rows if r["heatmaps"]]
    if not with_maps:
        return
    cols = len(with_maps[0]["heatmaps"])
    fig, axes = plt.subplots(len(with_maps), cols, figsize=(5.5 * cols, 4.2 * len(with_maps)), squeeze=False)
    for i, r in enumerate(with_maps):
        for j, h in enumerate(r["heatmaps"]):
            ax = axes[i][j]
            ax.imshow(h["weights"], cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
            ax.set_xticks(range(len(h["src"])), labels=h["src"], rotation=90, fontsize=6)
            rows_labels = (h["tgt"] + ["</s>"])[: len(h["weights"])]
            ax.set_yticks(range(len(rows_labels)), labels=rows_labels, fontsize=6)
            ax.set_title(f"{r['variant']}, test line {h['line'] + 1}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
