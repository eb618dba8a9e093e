"""FLOPs of a teacher-forced forward pass, counted from the shapes the way the network computes it.

Multiply-adds of every matrix product (x 2 FLOPs); elementwise work (gates, tanh, softmax, masking) is not
counted. The attention's share is the registry's (seq2seq/registry.py, :func:`attention_macs`), the rest
follows its decoder's wiring. tests/test_benchmark.py checks the count against torch's own count of a forward
pass for every registered attention. scripts/benchmark.py turns it into GFLOP/s.

Shapes: B batch, S source length, T target length, V target vocabulary.
"""

from __future__ import annotations

from seq2seq.config import ModelConfig
from seq2seq.registry import attention_macs, variant


def forward_flops(m: ModelConfig, v: int, b: int, s: int, t: int, src_tokens: int | None = None) -> float:
    """FLOPs (2 x multiply-adds) of one teacher-forced forward pass over a (B, S) -> (B, T) batch with
    ``src_tokens`` real source tokens (default B x S, no padding): the encoder runs over packed sequences, so a
    padded source position costs it nothing, while the decoder and the attention work on the padded shapes."""
    wiring = variant(m.attention).wiring
    hm, h, e = m.memory_size, m.dec_hidden, m.emb_size
    # encoder: per direction and layer, the gates of the input and of the previous state at every position
    enc_gates = (4 if m.cell == "lstm" else 3) * m.enc_hidden
    dirs = 2 if m.bidirectional else 1
    tokens = b * s if src_tokens is None else src_tokens
    enc = sum(dirs * tokens * enc_gates * ((e if layer == 0 else hm) + m.enc_hidden) for layer in range(m.enc_layers))
    # decoder (seq2seq/nn/decoder.py): s_0 from the bridge once per sentence; then every step the cell's gates
    # from the embedding, from its extra input (Bahdanau: the context; Luong: h~_{t-1}), from the state, and
    # from the layer below in the upper layers
    g = (4 if m.cell == "lstm" else 3) * h
    bridge_in = m.enc_hidden if wiring == "bahdanau" and m.bidirectional else hm
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
    return 2.0 * (enc + dec)
