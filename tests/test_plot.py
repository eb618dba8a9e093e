"""Attention as a text table and as a picture (seq2seq/report/plot.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from seq2seq.report.plot import format_attention, save_heatmap


def test_format_attention_table() -> None:
    attn = torch.tensor([[0.1, 0.9], [0.75, 0.25], [0.5, 0.5]])  # (T+1, S)
    table = format_attention(["▁x", "東京"], ["▁y", "z"], attn).splitlines()
    assert table[0].split() == ["▁x", "東京"]
    assert table[1].split() == ["▁y", "10", "90"]
    assert table[2].split() == ["z", "75", "25"]
    assert table[3].split() == ["</s>", "50", "50"]


def test_save_heatmap_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.png"
    save_heatmap(path, ["▁a", "$x$"], ["▁b"], torch.tensor([[0.3, 0.7], [0.5, 0.5]]), title="a $x$")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
