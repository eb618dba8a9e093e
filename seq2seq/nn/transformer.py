"""The Transformer of Vaswani et al. (2017), "Attention Is All You Need", from torch primitives: its encoder
(also the hybrid's, under an RNN decoder) and its decoder with a key/value cache for incremental decoding.

Sec. 3.1: N layers of self-attention and a position-wise feed-forward network (eq. 2, ReLU), each sublayer
wrapped in a residual connection and layer normalisation: LayerNorm(x + Dropout(Sublayer(x))) as in the paper
(``model.norm=post``), or x + Dropout(Sublayer(LayerNorm(x))) with a final LayerNorm over the stack
(``model.norm=pre``, the default: it trains without a careful warm-up; Wang et al. 2019, Xiong et al. 2020).
Sec. 3.2: multi-head scaled dot-product attention, eq. (1); sec. 3.4: embeddings scaled by sqrt(d_model);
sec. 3.5: sinusoidal positions, added to the embeddings; sec. 5.4: dropout on every sublayer's output and on
the sums of embeddings and positions (the paper uses none inside attention or the feed-forward network, nor do
we). Attention runs as ``F.scaled_dot_product_attention`` where its weights are not needed (training) and with
explicit weights where they are (the cross-attention of the last layer, which search reports, and the heads
``head_weights`` returns).

Shapes: B batch, S source length, T target positions given, t positions already cached, D = d_model,
N heads, d = D / N, F feed-forward size, L layers, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.config import ModelConfig
from seq2seq.nn.encoder import EncoderOutput
from seq2seq.special import PAD


def sinusoids(positions: Tensor, size: int) -> Tensor:
    """Sec. 3.5: PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(pos / 10000^(2i/D)). (T,) -> (T, D)."""
    rates = torch.exp(torch.arange(0, size, 2, device=positions.device, dtype=torch.float32)
                      * (-math.log(10000.0) / size))  # (ceil(D/2),)
    angles = positions.to(torch.float32).unsqueeze(1) * rates  # (T, ceil(D/2))
    table = torch.zeros(positions.size(0), size, device=positions.device)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : size // 2])
    return table  # (T, D)


class TransformerAttention(nn.Module):
    """Multi-head scaled dot-product attention, sec. 3.2.2: MultiHead(Q, K, V) = [head_1; ...; head_N] W^O with
    head_n = softmax(Q W_n^Q (K W_n^K)^T / sqrt(d)) V W_n^V, d = D / N.

    Keys and values are projected together (``project_kv``), so a cross-attention projects the memory once per
    batch and a self-attention appends each new position's to its cache. The weights' masks are boolean,
    True where a query may look.
    """

    def __init__(self, size: int, heads: int, kv_size: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(size, size)  # W^Q of all heads side by side
        self.kv = nn.Linear(kv_size, 2 * size)  # [W^K, W^V]
        self.out = nn.Linear(size, size)  # W^O

    def split(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, N, T, d)."""
        b, t, _ = x.shape
        return x.reshape(b, t, self.heads, -1).transpose(1, 2)

    def project_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of ``source`` (B, S, Hm), each (B, N, S, d)."""
        k, v = self.kv(source).chunk(2, dim=-1)  # (B, S, D) each
        return self.split(k), self.split(v)

    def forward(self, x: Tensor, k: Tensor, v: Tensor, mask: Tensor | None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """Queries from x (B, T, D) over k, v (B, N, S, d) -> (B, T, D), and the weights (B, N, T, S) if needed."""
        q = self.split(self.q(x))  # (B, N, T, d)
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, N, T, S)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(-1)  # (B, N, T, S)
            heads = weights @ v  # (B, N, T, d)
        else:
            weights = None
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, N, T, d)
        return self.out(heads.transpose(1, 2).flatten(2)), weights  # (B, T, D)


class FeedForward(nn.Module):
    """Eq. (2): FFN(x) = max(0, x W_1 + b_1) W_2 + b_2, applied to every position alike."""

    def __init__(self, size: int, inner: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(size, inner)
        self.w_2 = nn.Linear(inner, size)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(torch.relu(self.w_1(x)))  # (B, T, D)


class Residual(nn.Module):
    """One sublayer's residual connection, dropout and layer normalisation, pre- or post-norm (sec. 3.1, 5.4)."""

    def __init__(self, size: int, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(size)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def inner(self, x: Tensor) -> Tensor:
        """What the sublayer reads: the normalised input (pre-norm) or the input itself (post-norm)."""
        return self.norm(x) if self.pre_norm else x

    def outer(self, x: Tensor, y: Tensor) -> Tensor:
        """The residual sum of the input x and the sublayer's output y."""
        out = x + self.dropout(y)
        return out if self.pre_norm else self.norm(out)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        pre = cfg.norm == "pre"
        self.attention = TransformerAttention(cfg.d_model, cfg.attention_heads, cfg.d_model)
        self.feed_forward = FeedForward(cfg.d_model, cfg.ffn_size)
        self.res_attention = Residual(cfg.d_model, cfg.dropout, pre)
        self.res_ff = Residual(cfg.d_model, cfg.dropout, pre)

    def forward(self, x: Tensor, mask: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x (B, S, D), mask (B, 1, 1, S) -> (B, S, D), self-attention weights (B, N, S, S) if needed."""
        h = self.res_attention.inner(x)
        k, v = self.attention.project_kv(h)
        y, weights = self.attention(h, k, v, mask, need_weights)
        x = self.res_attention.outer(x, y)
        return self.res_ff.outer(x, self.feed_forward(self.res_ff.inner(x))), weights


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        pre = cfg.norm == "pre"
        self.self_attention = TransformerAttention(cfg.d_model, cfg.attention_heads, cfg.d_model)
        self.cross_attention = TransformerAttention(cfg.d_model, cfg.attention_heads, cfg.memory_size)
        self.feed_forward = FeedForward(cfg.d_model, cfg.ffn_size)
        self.res_self = Residual(cfg.d_model, cfg.dropout, pre)
        self.res_cross = Residual(cfg.d_model, cfg.dropout, pre)
        self.res_ff = Residual(cfg.d_model, cfg.dropout, pre)

    def forward(self, x: Tensor, cache: tuple[Tensor, Tensor], causal: Tensor | None, memory_kv: tuple[Tensor, Tensor],
                memory_mask: Tensor, need_weights: bool) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """x (B, T, D) at positions t..t+T-1; cache: keys and values (B, N, t, d) of the positions before.

        Returns the output (B, T, D), the keys and values of all t+T positions, and the cross-attention
        weights (B, N, T, S) if needed.
        """
        h = self.res_self.inner(x)
        k, v = self.self_attention.project_kv(h)  # (B, N, T, d) each
        k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)  # (B, N, t+T, d)
        y, _ = self.self_attention(h, k, v, causal)
        x = self.res_self.outer(x, y)
        y, weights = self.cross_attention(self.res_cross.inner(x), *memory_kv, memory_mask, need_weights)
        x = self.res_cross.outer(x, y)
        return self.res_ff.outer(x, self.feed_forward(self.res_ff.inner(x))), k, v, weights


class Embedding(nn.Embedding):
    """Token embeddings scaled by sqrt(D) (sec. 3.4) plus sinusoidal positions (sec. 3.5), then dropout. An
    ``nn.Embedding`` itself, so that its ``weight`` can be shared (``model.share_embeddings``)."""

    def __init__(self, vocab_size: int, size: int, dropout: float) -> None:
        super().__init__(vocab_size, size, padding_idx=PAD)
        self.dropout = nn.Dropout(dropout)
        self.scale = math.sqrt(size)

    def forward(self, ids: Tensor, first: int = 0) -> Tensor:
        """ids (B, T) at positions first..first+T-1 -> (B, T, D)."""
        positions = torch.arange(first, first + ids.size(1), device=ids.device)
        return self.dropout(super().forward(ids) * self.scale + sinusoids(positions, self.embedding_dim))


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform matrices and zero biases (the reference tensor2tensor and fairseq initialisation),
    embeddings N(0, D^-1/2) so that scaled by sqrt(D) they have unit variance, LayerNorm at identity."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.xavier_uniform_(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, 0.0, sub.embedding_dim ** -0.5)
            with torch.no_grad():
                sub.weight[PAD].zero_()
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)


class TransformerEncoder(nn.Module):
    """Sec. 3.1's encoder: model.enc_layers layers of self-attention and feed-forward, memory (B, S, D)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.embed = Embedding(vocab_size, cfg.d_model, cfg.dropout)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
        self.norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else None

    def reset_parameters(self) -> None:
        init_weights(self)

    def forward(self, src: Tensor, src_lens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """src (B, S), src_lens (B,) -> memory (B, S, D), mask (B, S), final (B, D).

        ``final``, the mean of the memory over the real positions, is what an RNN decoder's bridge reads in
        the hybrid (s_0 = tanh(W_s final)); the Transformer decoder does not use it.
        """
        memory, mask, _ = self.run(src)
        lengths = mask.sum(1, keepdim=True).clamp(min=1).to(memory.dtype)  # (B, 1)
        final = (memory * mask.unsqueeze(-1)).sum(1) / lengths  # (B, D)
        return memory, mask, final

    def run(self, src: Tensor, weight_layers: Sequence[int] = ()) -> tuple[Tensor, Tensor, list[Tensor]]:
        """The memory (B, S, D), the mask (B, S) and the self-attention weights (B, N, S, S) of ``weight_layers``."""
        mask = src != PAD  # (B, S)
        x = self.embed(src)  # (B, S, D)
        weights = []
        for i, layer in enumerate(self.layers):
            x, w = layer(x, mask[:, None, None, :], need_weights=i in weight_layers)
            if w is not None:
                weights.append(w)
        return (x if self.norm is None else self.norm(x)), mask, weights


class TransformerState(NamedTuple):
    """The Transformer decoder's state: the self-attention keys and values of every position decoded so far, per
    layer (the key/value cache). Cross-attention keys and values depend on the source alone and live in the
    encoder output (``EncoderOutput.keys``)."""

    keys: Tensor  # (L, B, N, t, d)
    values: Tensor  # (L, B, N, t, d)

    def select(self, indices: Tensor) -> TransformerState:
        """Rows ``indices`` along the batch dimension, for beam search."""
        return TransformerState(self.keys.index_select(1, indices), self.values.index_select(1, indices))


class TransformerDecoder(nn.Module):
    """Sec. 3.1's decoder: model.dec_layers layers of masked self-attention, cross-attention over the memory and
    feed-forward, then the vocabulary projection. Teacher forcing and incremental decoding are the same code: T
    new positions after the t cached ones, the causal mask letting position i see positions <= i."""

    def __init__(self, cfg: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = Embedding(vocab_size, cfg.d_model, cfg.dropout)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))
        self.norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else None
        self.vocab = nn.Linear(cfg.d_model, vocab_size)

    def reset_parameters(self) -> None:
        init_weights(self)

    def project_keys(self, memory: Tensor) -> Tensor:
        """Every layer's cross-attention keys and values, once per batch: (B, S, Hm) -> (B, S, L*2D)."""
        return torch.cat([layer.cross_attention.kv(memory) for layer in self.layers], -1)

    def init_state(self, enc: EncoderOutput) -> TransformerState:
        """An empty cache: nothing decoded yet."""
        b, heads = enc.memory.size(0), self.cfg.attention_heads
        empty = enc.memory.new_zeros(len(self.layers), b, heads, 0, self.cfg.d_model // heads)  # (L, B, N, 0, d)
        return TransformerState(empty, empty)

    def forward(self, tgt_in: Tensor, enc: EncoderOutput, state: TransformerState,
                need_weights: bool = True) -> tuple[Tensor, Tensor | None, TransformerState]:
        """tgt_in (B, T) -> logits (B, T, V), the last layer's cross-attention averaged over its heads (B, T, S)
        (as fairseq reports alignments), and the state with the T new positions cached."""
        last = len(self.layers) - 1
        x, weights, state = self.run(tgt_in, enc, state, (last,) if need_weights else ())
        return self.vocab(x), (weights[0].mean(1) if weights else None), state

    def run(self, tgt_in: Tensor, enc: EncoderOutput, state: TransformerState,
            weight_layers: Sequence[int] = ()) -> tuple[Tensor, list[Tensor], TransformerState]:
        """The top outputs (B, T, D), the cross-attention weights (B, N, T, S) of ``weight_layers``, the state."""
        b, s, t = enc.memory.size(0), enc.memory.size(1), state.keys.size(3)
        x = self.embed(tgt_in, first=t)  # (B, T, D)
        n = tgt_in.size(1)
        causal = None
        if n > 1:  # position t+i sees the cache and the new positions up to itself
            causal = torch.arange(t + n, device=x.device) <= torch.arange(t, t + n, device=x.device).unsqueeze(1)
        memory_mask = enc.mask[:, None, None, :]  # (B, 1, 1, S)
        assert enc.keys is not None
        memory_kv = enc.keys.view(b, s, len(self.layers), -1)  # (B, S, L, 2D)
        keys, values, weights = [], [], []
        for i, layer in enumerate(self.layers):
            kv = layer.cross_attention.split
            k_mem, v_mem = memory_kv[:, :, i].chunk(2, dim=-1)  # (B, S, D) each
            x, k, v, w = layer(x, (state.keys[i], state.values[i]), causal, (kv(k_mem), kv(v_mem)), memory_mask,
                               i in weight_layers)
            keys.append(k)
            values.append(v)
            if w is not None:
                weights.append(w)
        x = x if self.norm is None else self.norm(x)
        return x, weights, TransformerState(torch.stack(keys), torch.stack(values))

    def head_weights(self, tgt_in: Tensor, enc: EncoderOutput, layer: int = -1) -> Tensor:
        """Teacher-forced cross-attention of every head of ``layer`` (the last by default): (B, T, N, S)."""
        index = range(len(self.layers))[layer]
        _, weights, _ = self.run(tgt_in, enc, self.init_state(enc), (index,))
        return weights[0].transpose(1, 2)  # (B, T, N, S)
