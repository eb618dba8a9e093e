"""Embeddings and a (bi)directional GRU / LSTM over packed sequences.

Shapes: B batch, S source length, E embedding, H hidden per direction, Hm = H x directions.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.special import PAD


class EncoderOutput(NamedTuple):
    memory: Tensor  # (B, S, Hm) encoder states h_j
    keys: Tensor | None  # (B, S, *) the attention's step-independent projection of memory
    mask: Tensor  # (B, S) True at real tokens
    final: Tensor  # (B, Hm) top layer's last forward state [; first backward state]

    def select(self, indices: Tensor) -> EncoderOutput:
        """Rows ``indices`` of every tensor (beam search expands and reorders with this)."""
        return EncoderOutput(*(None if t is None else t.index_select(0, indices) for t in self))


class Encoder(nn.Module):
    def __init__(self, cell: str, vocab_size: int, emb_size: int, hidden: int, layers: int,
                 bidirectional: bool, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_size, padding_idx=PAD)
        self.dropout = nn.Dropout(dropout)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(emb_size, hidden, layers, batch_first=True, bidirectional=bidirectional,
                       dropout=dropout if layers > 1 else 0.0)
        self.directions = 2 if bidirectional else 1

    def forward(self, src: Tensor, src_lens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """src (B, S), src_lens (B,) -> memory (B, S, Hm), mask (B, S), final (B, Hm)."""
        emb = self.dropout(self.embed(src))  # (B, S, E)
        # packing makes padded positions invisible to the recurrence, in both directions
        packed = pack_padded_sequence(emb, src_lens.cpu(), batch_first=True, enforce_sorted=False)
        out, h_n = self.rnn(packed)
        if isinstance(h_n, tuple):  # LSTM: (h_n, c_n)
            h_n = h_n[0]
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))  # (B, S, Hm)
        final = torch.cat(list(h_n[-self.directions:]), dim=-1)  # (B, Hm) top layer, fwd then bwd
        return self.dropout(memory), src != PAD, final
