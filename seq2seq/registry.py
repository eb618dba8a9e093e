"""The attention registry: every attention's name, its score function, its decoder wiring and its size rules.

Plain data, importing nothing heavy: ``ModelConfig`` (seq2seq/config.py) checks names and sizes against it,
seq2seq/nn/attention.py builds the score class it names, and seq2seq/nn/decoder.py the decoder of its wiring
(whose output width :func:`output_size` gives). Adding an attention is one entry here and its class.
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


ATTENTIONS: dict[str, Variant] = {
    "bahdanau": Variant("AdditiveAttention", "bahdanau"),
    "luong_concat": Variant("ConcatAttention", "luong"),
    "luong_dot": Variant("DotAttention", "luong", dot=True),
    "luong_general": Variant("GeneralAttention", "luong"),
    "scaled_dot": Variant("ScaledDotAttention", "luong", dot=True),
    "multihead": Variant("MultiHeadAttention", "luong", heads=True),
    "none": Variant(None, "none"),
}


def variant(name: str) -> Variant:
    """The registered attention called ``name``; an unknown name lists the right ones."""
    if name not in ATTENTIONS:
        raise ConfigError(f"unknown attention {name!r} (model/attention=...); choose one of "
                          f"{', '.join(sorted(ATTENTIONS))}")
    return ATTENTIONS[name]


def size_problem(name: str, dec_hidden: int, memory_size: int, attention_size: int, heads: int) -> str | None:
    """Why attention ``name`` cannot work with these sizes, or None."""
    v = variant(name)
    if v.dot and dec_hidden != memory_size:
        return (f"{name} scores h_t . h_s, so model.dec_hidden ({dec_hidden}) must equal the encoder memory size "
                f"({memory_size} = model.enc_hidden x directions); set model.dec_hidden={memory_size} or use "
                "luong_general")
    if v.heads and attention_size % heads:
        return (f"model.attention_heads ({heads}) must divide model.attention_size ({attention_size}), the width "
                "the heads share; change one of them")
    return None


def output_size(name: str, emb_size: int, dec_hidden: int) -> int:
    """Width of the vector the decoder feeds to the vocabulary projection: Bahdanau's maxout output t_i is as
    wide as the embeddings (appendix A.2.2); the others feed the top state, or Luong's h~_t."""
    return emb_size if variant(name).wiring == "bahdanau" else dec_hidden
