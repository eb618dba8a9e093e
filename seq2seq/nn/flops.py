"""FLOPs of a teacher-forced forward pass, counted from the shapes the way the network computes it.

Multiply-adds of every matrix product (x 2 FLOPs); elementwise work (gates, tanh, softmax, masking) is not
counted. The attention's share is the registry's (seq2seq/registry.py, :func:`attention_macs`), the rest
follows its decoder's wiring. tests/test_benchmark.py checks the count against torch's own count of a forward
pass for every registered attention. scripts/benchmark.py turns it into GFLOP/s.

The Transformer's parts (seq2seq/nn/transformer.py) are counted the same way: per layer and position, the
projections 4 D^2 (W^Q, [W^K, W^V], W^O), the scores and the weighted sum 2 x (positions attended) x D, the
feed-forward network 2 D F; they run on the padded shapes.

Shapes: B batch, S source length, T target length, V target vocabulary, D d_model, F ffn_size.
"""

from __future__ import annotations

from seq2seq.config import ModelConfig
from seq2seq.registry import attention_macs, variant


def forward_flops(m: ModelConfig, v: int, b: int, s: int, t: int, src_tokens: int | None = None) -> float:
    """FLOPs (2 x multiply-adds) of one teacher-forced forward pass over a (B, S) -> (B, T) batch with
    ``src_tokens`` real source tokens (default B x S, no padding): an RNN encoder runs over packed sequences, so
    a padded source position costs it nothing; everything else works on the padded shapes."""
    if m.encoder == "transformer":
        enc = b * s * m.enc_layers * self_attention_layer_macs(m.d_model, m.ffn_size, s)
    else:
        enc = rnn_encoder_macs(m, b * s if src_tokens is None else src_tokens)
    if m.decoder == "transformer":
        return 2.0 * (enc + transformer_decoder_macs(m, v, b, s, t))
    return 2.0 * (enc + rnn_decoder_macs(m, v, b, s, t))


def self_attention_layer_macs(d: int, f: int, attended: int) -> int:
    """Multiply-adds per position of one encoder layer: W^Q, [W^K, W^V], W^O (4 D^2), scores and weighted sum
    over ``attended`` positions (2 x attended x D), the feed-forward network (2 D F)."""
    return 4 * d * d + 2 * attended * d + 2 * d * f


def transformer_decoder_macs(m: ModelConfig, v: int, b: int, s: int, t: int) -> int:
    """Every decoder layer's masked self-attention over the T positions (computed whole, then masked), its
    cross-attention (keys and values of the memory once per batch, W^Q, scores and sum over S, W^O), the
    feed-forward network; then the vocabulary projection."""
    d = m.d_model
    per_position = self_attention_layer_macs(d, m.ffn_size, t) + 2 * d * d + 2 * s * d
    memory_kv = b * s * m.memory_size * 2 * d
    return m.dec_layers * (b * t * per_position + memory_kv) + b * t * d * v


def rnn_encoder_macs(m: ModelConfig, tokens: int) -> int:
    """The RNN encoder over packed sequences: per direction and layer, the gates of the input and of the previous
    state at every real source position."""
    e = m.emb_size
    enc_gates = (4 if m.cell == "lstm" else 3) * m.enc_hidden
    dirs = 2 if m.bidirectional else 1
    return sum(dirs * tokens * enc_gates * ((e if layer == 0 else dirs * m.enc_hidden) + m.enc_hidden)
               for layer in range(m.enc_layers))


def rnn_decoder_macs(m: ModelConfig, v: int, b: int, s: int, t: int) -> int:
    """The RNN decoder of model.attention's wiring on the padded shapes, its attention included."""
    wiring = variant(m.attention).wiring
    hm, h, e = m.memory_size, m.dec_hidden, m.emb_size
    # decoder (seq2seq/nn/decoder.py): s_0 from the bridge once per sentence; then every step the cell's gates
    # from the embedding, from its extra input (Bahdanau: the context; Luong: h~_{t-1}), from the state, and
    # from the layer below in the upper layers
    g = (4 if m.cell == "lstm" else 3) * h
    bridge_in = m.enc_hidden if wiring == "bahdanau" and m.bidirectional and m.encoder == "rnn" else hm
    extra = {"bahdanau": hm, "luong": h}.get(wiring, 0)
    dec = b * bridge_in * m.dec_layers * h
    dec += b * t * (e * g + extra * g + h * g + (m.dec_layers - 1) * 2 * h * g)
    once, step = attention_macs(m.attention, s, h, hm, m.attention_size, window=m.attention_window is not None)
    dec += b * once + b * t * step
    if wiring == "luong":
        dec += b * t * (hm + h) * h  # h~_t = tanh(W_c [c_t; h_t])
    elif wiring == "bahdanau":
        dec += b * t * (h + e + hm) * 2 * m.output_size  # the deep output U_o s + V_o E y + C_o c before maxout
    dec += b * t * m.output_size * v  # the vocabulary projection
    return dec
