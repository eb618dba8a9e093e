"""The registry: every attention's name, its score function, its decoder wiring, its size rules and its cost in
multiply-adds; and the encoders and decoders a model is built from.

Plain data, importing nothing heavy: ``ModelConfig`` (seq2seq/config.py) checks names and sizes against it,
seq2seq/nn/attention.py builds the score class it names, seq2seq/nn/decoder.py the decoder of its wiring
(whose output width :func:`output_size` gives), seq2seq/nn/flops.py counts its multiply-adds with
:func:`attention_macs`, and seq2seq/nn/model.py builds the encoder and decoder named by ``model.encoder`` and
``model.decoder`` (:data:`ENCODERS`, :data:`DECODERS`). Adding an attention is one entry here and its class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from seq2seq.errors import ConfigError

# Multiply-adds of one attention for one sentence, from S source positions, the query size Hq (decoder state),
# the memory size Hm (encoder output) and the attention size A: (once per sentence: the step-independent
# projection of the memory into keys; per target step: query projection, scores and the context). Each counts
# the matrix products of its class in seq2seq/nn/attention.py; tests/test_benchmark.py checks them against
# torch's own count of a forward pass.
Cost = Callable[[int, int, int, int], tuple[int, int]]


def _additive_cost(s: int, hq: int, hm: int, a: int) -> tuple[int, int]:
    # U_a h_s once; each step W_a q, v_a^T over the S tanh vectors, the weighted sum of the memory
    return s * hm * a, hq * a + s * a + s * hm


def _dot_cost(s: int, hq: int, hm: int, a: int) -> tuple[int, int]:
    # each step q . h_s (the scaling by 1/sqrt(d) is elementwise), the weighted sum of the memory
    return 0, s * hq + s * hm


def _general_cost(s: int, hq: int, hm: int, a: int) -> tuple[int, int]:
    # W_a h_s once; each step q . (W_a h_s), the weighted sum of the memory
    return s * hm * hq, s * hq + s * hm


def _multihead_cost(s: int, hq: int, hm: int, a: int) -> tuple[int, int]:
    # [W^K, W^V] h_s once; each step W^Q q, N heads of S scores of width A/N, the weighted sum of the values
    # (N x S x A/N), W^O back to the memory size
    return s * hm * 2 * a, hq * a + s * a + s * a + a * hm


@dataclass(frozen=True)
class Variant:
    score_class: str | None  # the score class in seq2seq/nn/attention.py (SCORES); None: no attention at all
    wiring: str  # the decoder of its paper: "bahdanau", "luong" or "none" (seq2seq/nn/decoder.py, DECODERS)
    dot: bool = False  # scores h_t . h_s: the decoder state must be as wide as the encoder memory
    heads: bool = False  # model.attention_heads heads share model.attention_size
    cost: Cost | None = None  # its multiply-adds (see Cost); None: no attention at all
    coverage: bool = False  # the score can take Tu et al. (2016)'s coverage term (model.coverage=true)


ATTENTIONS: dict[str, Variant] = {
    "bahdanau": Variant("AdditiveAttention", "bahdanau", cost=_additive_cost, coverage=True),
    "luong_concat": Variant("ConcatAttention", "luong", cost=_additive_cost),
    "luong_dot": Variant("DotAttention", "luong", dot=True, cost=_dot_cost),
    "luong_general": Variant("GeneralAttention", "luong", cost=_general_cost),
    "scaled_dot": Variant("ScaledDotAttention", "luong", dot=True, cost=_dot_cost),
    "multihead": Variant("MultiHeadAttention", "luong", heads=True, cost=_multihead_cost),
    "none": Variant(None, "none"),
}


# model.encoder: what reads the source into the memory h_j the decoder attends to
ENCODERS: dict[str, str] = {
    "rnn": "a (bi)directional GRU / LSTM, memory size model.enc_hidden x directions (seq2seq/nn/encoder.py)",
    "transformer": "Vaswani et al. (2017)'s self-attention layers, memory size model.d_model "
                   "(seq2seq/nn/transformer.py)",
}

# model.decoder: what writes the target; the RNN decoder is wired as its attention's paper (model/attention=...)
DECODERS: dict[str, str] = {
    "rnn": "the RNN decoder of the attention's paper (seq2seq/nn/decoder.py)",
    "transformer": "Vaswani et al. (2017)'s masked self-attention and cross-attention layers "
                   "(seq2seq/nn/transformer.py)",
}

# The attention a Transformer decoder's cross-attention is: multi-head scaled dot-product (sec. 3.2.2)
TRANSFORMER_ATTENTION = "multihead"


def check_part(kind: str, name: str) -> None:
    """``name`` is a registered ``kind`` ("encoder" or "decoder"); an unknown one lists the right ones."""
    parts = ENCODERS if kind == "encoder" else DECODERS
    if name not in parts:
        raise ConfigError(f"unknown {kind} {name!r} (model.{kind}=...); choose one of {', '.join(sorted(parts))}")


def variant(name: str) -> Variant:
    """The registered attention called ``name``; an unknown name lists the right ones."""
    if name not in ATTENTIONS:
        raise ConfigError(f"unknown attention {name!r} (model/attention=...); choose one of "
                          f"{', '.join(sorted(ATTENTIONS))}")
    return ATTENTIONS[name]


def size_problem(name: str, dec_hidden: int, memory_size: int, attention_size: int, heads: int,
                 memory_from: str = "model.enc_hidden x directions") -> str | None:
    """Why attention ``name`` cannot work with these sizes, or None; ``memory_from`` says what sets the memory size."""
    v = variant(name)
    if v.dot and dec_hidden != memory_size:
        return (f"{name} scores h_t . h_s, so model.dec_hidden ({dec_hidden}) must equal the encoder memory size "
                f"({memory_size} = {memory_from}); set model.dec_hidden={memory_size} or use luong_general")
    if v.heads and attention_size % heads:
        return (f"model.attention_heads ({heads}) must divide model.attention_size ({attention_size}), the width "
                "the heads share; change one of them")
    return None


def output_size(name: str, emb_size: int, dec_hidden: int) -> int:
    """Width of the vector the decoder feeds to the vocabulary projection: Bahdanau's maxout output t_i is as
    wide as the embeddings (appendix A.2.2); the others feed the top state, or Luong's h~_t."""
    return emb_size if variant(name).wiring == "bahdanau" else dec_hidden


def attention_macs(name: str, src_len: int, query_size: int, memory_size: int, attention_size: int,
                   window: bool = False) -> tuple[int, int]:
    """Multiply-adds of attention ``name`` for one sentence of ``src_len`` source positions: (once per sentence,
    per target step); (0, 0) for none. ``window``: local-p, which adds p_t = S sigmoid(v_p^T tanh(W_p h_t))
    at every step (Luong eq. 9)."""
    cost = variant(name).cost
    if cost is None:
        return 0, 0
    once, step = cost(src_len, query_size, memory_size, attention_size)
    if window:
        step += query_size * attention_size + attention_size  # W_p h_t, then v_p
    return once, step
