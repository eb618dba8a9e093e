"""Decoders: Bahdanau-style, Luong-style (input feeding) and plain (no attention); one DecoderState.

Every decoder runs teacher-forced over T steps with the same code that decodes one step (T = 1),
so the two agree. Only the recurrence runs step by step: the embeddings' share of the RNN input
projection and the vocabulary projection are computed for all steps at once (docs/developing.md, conventions).

Shapes: B batch, T target length, S source length, E embedding, H decoder hidden, Hm memory,
L decoder layers, V target vocabulary, G = 3H (GRU) or 4H (LSTM) gate width.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from seq2seq.config import ModelConfig
from seq2seq.nn.attention import Attention, build_attention
from seq2seq.nn.encoder import EncoderOutput
from seq2seq.registry import ATTENTIONS
from seq2seq.special import PAD


class DecoderState(NamedTuple):
    hidden: Tensor  # (L, B, H)
    cell: Tensor | None  # (L, B, H) LSTM memory cell, None for GRU
    feed: Tensor | None  # (B, H) Luong's attentional state h~_{t-1} (input feeding), else None
    coverage: Tensor | None = None  # (B, S) Tu et al.'s coverage C_{i-1,j} (model.coverage), else None

    def select(self, indices: Tensor) -> DecoderState:
        """Rows ``indices`` along the batch dimension, for beam search."""
        return DecoderState(
            self.hidden.index_select(1, indices),
            None if self.cell is None else self.cell.index_select(1, indices),
            None if self.feed is None else self.feed.index_select(0, indices),
            None if self.coverage is None else self.coverage.index_select(0, indices),
        )


class StackedCell(nn.Module):
    """An L-layer GRU or LSTM stepped by hand.

    Layer 0's input is [embedding; extra]: the embedding share of its projection is computed for all
    steps at once by ``precompute``; only ``extra`` (context or h~) is projected inside the loop.
    """

    def __init__(self, cell: str, emb_size: int, extra_size: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.lstm = cell == "lstm"
        gates = (4 if self.lstm else 3) * hidden
        self.emb_proj = nn.Linear(emb_size, gates)
        self.extra_proj = nn.Linear(extra_size, gates, bias=False) if extra_size else None
        self.upper_proj = nn.ModuleList(nn.Linear(hidden, gates) for _ in range(layers - 1))
        self.hidden_proj = nn.ModuleList(nn.Linear(hidden, gates) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)

    def precompute(self, emb: Tensor) -> Tensor:
        return self.emb_proj(emb)  # (B, T, G)

    def step(self, x: Tensor, extra: Tensor | None, hidden: Tensor,
             cell: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """x (B, G) precomputed input, extra (B, X), hidden / cell (L, B, H) -> new hidden / cell."""
        new_h, new_c = [], []
        for layer in range(hidden.size(0)):
            if layer == 0:
                gi = x if extra is None or self.extra_proj is None else x + self.extra_proj(extra)  # (B, G)
            else:
                gi = self.upper_proj[layer - 1](self.dropout(new_h[-1]))
            gh = self.hidden_proj[layer](hidden[layer])  # (B, G)
            if self.lstm:
                assert cell is not None
                i, f, g, o = (gi + gh).chunk(4, dim=-1)
                c = torch.sigmoid(f) * cell[layer] + torch.sigmoid(i) * torch.tanh(g)
                new_c.append(c)
                new_h.append(torch.sigmoid(o) * torch.tanh(c))
            else:
                i_r, i_z, i_n = gi.chunk(3, dim=-1)
                h_r, h_z, h_n = gh.chunk(3, dim=-1)
                r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
                n = torch.tanh(i_n + r * h_n)
                new_h.append(n + z * (hidden[layer] - n))  # (1 - z) n + z h
        return torch.stack(new_h), (torch.stack(new_c) if self.lstm else None)


class Decoder(nn.Module):
    """Shared parts: embeddings, the stacked cell, the initial-state bridge, the vocabulary projection."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, extra_size: int, bridge_in: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(vocab_size, cfg.emb_size, padding_idx=PAD)
        self.dropout = nn.Dropout(cfg.dropout)
        self.cell = StackedCell(cfg.cell, cfg.emb_size, extra_size, cfg.dec_hidden, cfg.dec_layers, cfg.dropout)
        self.bridge = nn.Linear(bridge_in, cfg.dec_layers * cfg.dec_hidden)
        self.vocab = nn.Linear(cfg.output_size, vocab_size)  # the registry's width (seq2seq/registry.py)
        self.attention: Attention | None = None

    def project_keys(self, memory: Tensor) -> Tensor | None:
        """The attention's step-independent part of the score, once per batch: (B, S, Hm) -> (B, S, *)."""
        return None if self.attention is None else self.attention.project_keys(memory)

    def bridge_input(self, final: Tensor) -> Tensor:
        return final  # (B, Hm)

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        """s_0 = tanh(W_s final), one slice per layer."""
        b = enc.final.size(0)
        hidden = torch.tanh(self.bridge(self.bridge_input(enc.final)))  # (B, L*H)
        hidden = hidden.view(b, self.cfg.dec_layers, self.cfg.dec_hidden).transpose(0, 1).contiguous()  # (L, B, H)
        cell = torch.zeros_like(hidden) if self.cfg.cell == "lstm" else None
        coverage = enc.memory.new_zeros(b, enc.memory.size(1)) if self.cfg.coverage else None  # C_0 = 0, (B, S)
        return DecoderState(hidden, cell, self.initial_feed(b, hidden), coverage)

    def initial_feed(self, batch: int, hidden: Tensor) -> Tensor | None:
        return None

    def forward(self, tgt_in: Tensor, enc: EncoderOutput, state: DecoderState,
                need_weights: bool = True) -> tuple[Tensor, Tensor, DecoderState]:
        """Teacher forcing: tgt_in (B, T) -> logits (B, T, V), attention (B, T, S), final state. The RNN decoder
        computes the weights anyway (its context needs them), so ``need_weights`` changes nothing."""
        emb = self.dropout(self.embed(tgt_in))  # (B, T, E)
        outputs, weights, state = self.recur(emb, self.cell.precompute(emb), enc, state)
        return self.vocab(outputs), weights, state

    def recur(self, emb: Tensor, x: Tensor, enc: EncoderOutput,
              state: DecoderState) -> tuple[Tensor, Tensor, DecoderState]:
        """The step-by-step part: -> output vectors (B, T, O), attention (B, T, S), final state.

        The output vectors have had their dropout, once: the vocabulary projection takes them as they are.
        """
        raise NotImplementedError


class BahdanauDecoder(Decoder):
    """Bahdanau et al. (2015), section 3.1 and appendix A.2.2.

    e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j) scores with the *previous* state; c_i goes into the RNN,
    s_i = f(s_{i-1}, [E y_{i-1}; c_i]); deep output t_i = maxout(U_o s_i + V_o E y_{i-1} + C_o c_i) from
    the new state as in eq. (4) (appendix A.2.2 writes s_{i-1} there). s_0 = tanh(W_s h<-_1) from the first
    backward encoder state. The GRU's reset gate acts in PyTorch's form r * (U s + b), where A.2.2 has
    U (r * s) (docs/attention.md, "Where we depart from the papers").

    With ``model.coverage`` the score also reads the coverage of every source position (Tu et al. 2016, sec. 3.1),
    e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j + V_a C_{i-1,j}), updated after each step by their linguistic
    coverage with fertility 1 (sec. 3.1.1): C_{i,j} = C_{i-1,j} + a_ij, the attention each source word has had
    so far (the coverage vector of See et al. 2017, eq. 10-11).
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int) -> None:
        from_backward = cfg.encoder == "rnn" and cfg.bidirectional  # h<-_1, the first backward state
        bridge_in = cfg.enc_hidden if from_backward else cfg.memory_size
        super().__init__(cfg, vocab_size, cfg.memory_size, bridge_in)
        self.from_backward = from_backward
        self.attention = build_attention("bahdanau", cfg.dec_hidden, cfg.memory_size, cfg.attention_size,
                                         coverage=cfg.coverage)
        out = cfg.output_size
        self.out_state = nn.Linear(cfg.dec_hidden, 2 * out)  # U_o (maxout pool of 2)
        self.out_emb = nn.Linear(cfg.emb_size, 2 * out, bias=False)  # V_o
        self.out_ctx = nn.Linear(cfg.memory_size, 2 * out, bias=False)  # C_o

    def bridge_input(self, final: Tensor) -> Tensor:
        return final[:, -self.cfg.enc_hidden:] if self.from_backward else final  # (B, H_enc) h<-_1

    def recur(self, emb, x, enc, state):
        hiddens, contexts, weights = [], [], []
        hidden, cell, coverage = state.hidden, state.cell, state.coverage
        for x_t in x.unbind(1):  # unbind, not x[:, t]: its backward is one stack, not T zero-filled (B, T, G)
            keys = enc.keys if coverage is None else self.attention.cover(enc.keys, coverage)  # (B, S, A)
            context, w = self.attention(hidden[-1], keys, enc.memory, enc.mask)  # (B, Hm), (B, S)
            if coverage is not None:
                coverage = coverage + w  # C_{i,j} = C_{i-1,j} + a_ij
            hidden, cell = self.cell.step(x_t, context, hidden, cell)
            hiddens.append(hidden[-1])
            contexts.append(context)
            weights.append(w)
        s, c = torch.stack(hiddens, 1), torch.stack(contexts, 1)  # (B, T, H), (B, T, Hm)
        t_tilde = self.out_state(s) + self.out_emb(emb) + self.out_ctx(c)  # (B, T, 2*O)
        t_out = t_tilde.view(*t_tilde.shape[:-1], -1, 2).amax(-1)  # (B, T, O) maxout
        return self.dropout(t_out), torch.stack(weights, 1), DecoderState(hidden, cell, None, coverage)


class LuongDecoder(Decoder):
    """Luong et al. (2015), section 3: score with the *current* state h_t (eq. 7-8), then
    h~_t = tanh(W_c [c_t; h_t]) (eq. 5), fed into the next step's input (input feeding, section 3.3).
    s_0 = tanh(W_s [h->_S; h<-_1]) from our bidirectional encoder, where the paper's unidirectional encoder
    (reading the source reversed) hands its final state over as it is. Also the wiring of scaled_dot and
    multihead.
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int) -> None:
        super().__init__(cfg, vocab_size, cfg.dec_hidden, cfg.memory_size)
        self.attention = build_attention(cfg.attention, cfg.dec_hidden, cfg.memory_size, cfg.attention_size,
                                         cfg.attention_window, cfg.attention_heads)
        self.w_c = nn.Linear(cfg.memory_size + cfg.dec_hidden, cfg.dec_hidden, bias=False)

    def initial_feed(self, batch: int, hidden: Tensor) -> Tensor:
        return hidden.new_zeros(batch, self.cfg.dec_hidden)  # h~_0 = 0

    def recur(self, emb, x, enc, state):
        outputs, weights = [], []
        hidden, cell, feed = state.hidden, state.cell, state.feed
        for x_t in x.unbind(1):  # see BahdanauDecoder.recur
            hidden, cell = self.cell.step(x_t, feed, hidden, cell)
            context, w = self.attention(hidden[-1], enc.keys, enc.memory, enc.mask)  # (B, Hm), (B, S)
            # h~_t with its dropout, once: the same vector is fed to the next step and projected to the
            # vocabulary (as OpenNMT-py's input feeding does)
            feed = self.dropout(torch.tanh(self.w_c(torch.cat([context, hidden[-1]], -1))))  # (B, H)
            outputs.append(feed)
            weights.append(w)
        return torch.stack(outputs, 1), torch.stack(weights, 1), DecoderState(hidden, cell, feed)


class PlainDecoder(Decoder):
    """No attention: the bridged final encoder state initialises the RNN and no context is used."""

    def __init__(self, cfg: ModelConfig, vocab_size: int) -> None:
        super().__init__(cfg, vocab_size, 0, cfg.memory_size)

    def recur(self, emb, x, enc, state):
        outputs = []
        hidden, cell = state.hidden, state.cell
        for x_t in x.unbind(1):  # see BahdanauDecoder.recur
            hidden, cell = self.cell.step(x_t, None, hidden, cell)
            outputs.append(hidden[-1])
        b, t, s = x.size(0), x.size(1), enc.memory.size(1)
        return self.dropout(torch.stack(outputs, 1)), x.new_zeros(b, t, s), DecoderState(hidden, cell, None)


DECODERS: dict[str, type[Decoder]] = {  # by wiring (seq2seq/registry.py, ATTENTIONS)
    "bahdanau": BahdanauDecoder,
    "luong": LuongDecoder,
    "none": PlainDecoder,
}


def build_decoder(cfg: ModelConfig, vocab_size: int) -> Decoder:
    """The decoder whose wiring matches ``cfg.attention``'s paper."""
    return DECODERS[ATTENTIONS[cfg.attention].wiring](cfg, vocab_size)
