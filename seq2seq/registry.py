"""The registry: every attention's name, its score function, its decoder wiring and its size rules; and the
encoders and decoders a model is built from.

Plain data, importing nothing heavy: ``ModelConfig`` (seq2seq/config.py) checks names and sizes against it,
seq2seq/nn/attention.py builds the score class it names, and seq2seq/nn/decoder.py the decoder of its wiring
(whose output width :func:`output_size` gives); seq2seq/nn/model.py builds the encoder and decoder named by
``model.encoder`` and ``model.decoder`` (:data:`ENCODERS`, :data:`DECODERS`). Adding an attention is one entry
here and its class.
"""

from __future__ import annotations

from dataclasses import dataclass

from seq2seq.errors import ConfigError


@dataclass(frozen=True)
class Variant:
    score: str | None  # the score class in seq2seq/nn/attention.py (SCORES); None: no attention at all
    wiring: str  # the decoder of its paper: "bahdanau", "luong" or "none" (seq2seq/nn/decoder.py, DECODERS)
    dot: bool = False  # scores h_t . h_s: the decoder state must be as wide as the encoder memory
    heads: bool = False  # model.attention_heads heads share model.attention_size
    coverage: bool = False  # the score can take Tu et al. (2016)'s coverage term (model.coverage=true)


ATTENTIONS: dict[str, Variant] = {
    "bahdanau": Variant("AdditiveAttention", "bahdanau", coverage=True),
    "luong_concat": Variant("ConcatAttention", "luong"),
    "luong_dot": Variant("DotAttention", "luong", dot=True),
    "luong_general": Variant("GeneralAttention", "luong"),
    "scaled_dot": Variant("ScaledDotAttention", "luong", dot=True),
    "multihead": Variant("MultiHeadAttention", "luong", heads=True),
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
