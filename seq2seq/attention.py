"""The attention family: one base class, one subclass per score function, a dict of them, a factory.

The base class masks padding, normalises with a softmax and takes the weighted sum of the memory;
a subclass writes only ``score`` (and ``project_keys`` when part of its score does not depend on the
decoder step, so it is computed once per batch). With ``window=D`` the base class turns any score into
Luong et al.'s local-p attention.

Shapes: B batch, S source length, Hq query (decoder) size, Hm memory (encoder output) size, A the
hidden size of additive scores.

References: Bahdanau, Cho, Bengio (2015), "Neural Machine Translation by Jointly Learning to Align and
Translate", eq. (5)-(6) and appendix A.1.2; Luong, Pham, Manning (2015), "Effective Approaches to
Attention-based Neural Machine Translation", eq. (7)-(10).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seq2seq.errors import ConfigError


class Attention(nn.Module):
    """Masking, softmax and the weighted sum shared by every score function.

    ``forward(query, keys, memory, mask)`` returns the context (B, Hm) and the weights (B, S).
    """

    def __init__(self, query_size: int, memory_size: int, attention_size: int, window: int | None = None) -> None:
        super().__init__()
        self.window = window
        if window is not None:
            # Luong eq. (9): p_t = S * sigmoid(v_p^T tanh(W_p h_t))
            self.w_p = nn.Linear(query_size, attention_size, bias=False)
            self.v_p = nn.Linear(attention_size, 1, bias=False)

    @staticmethod
    def size_problem(query_size: int, memory_size: int) -> str | None:
        """Why these sizes cannot be scored, or None (checked once, when the model config is made)."""
        return None

    def project_keys(self, memory: Tensor) -> Tensor:
        """The step-independent part of the score, once per batch. (B, S, Hm) -> (B, S, *)."""
        return memory

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        """Unnormalised scores. query (B, Hq), keys (B, S, *) -> (B, S)."""
        raise NotImplementedError

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        scores = self.score(query, keys)  # (B, S)
        gaussian = None
        if self.window is not None:
            mask, gaussian = self._local_window(query, mask)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, S)
        if gaussian is not None:
            weights = weights * gaussian  # Luong eq. (10): a_t(s) = align(h_t, h_s) exp(-(s - p_t)^2 / 2 sigma^2)
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)  # (B, Hm)
        return context, weights

    def _local_window(self, query: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Local-p: restrict to [p_t - D, p_t + D] and weight by a Gaussian with sigma = D / 2."""
        lengths = mask.sum(dim=-1, keepdim=True).to(query.dtype)  # (B, 1) true source lengths
        p = lengths * torch.sigmoid(self.v_p(torch.tanh(self.w_p(query))))  # (B, 1)
        positions = torch.arange(mask.size(1), device=mask.device, dtype=query.dtype)  # (S,)
        distance = positions.unsqueeze(0) - p  # (B, S)
        assert self.window is not None
        sigma = self.window / 2.0
        inside = mask & (distance.abs() <= self.window)  # never empty: p_t lies within [0, S]
        return inside, torch.exp(-(distance**2) / (2 * sigma**2))


class AdditiveAttention(Attention):
    """Bahdanau eq. (6) / appendix A.1.2: e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j).

    U_a h_j does not depend on the decoder step, so it is the projected key.
    """

    def __init__(self, query_size: int, memory_size: int, attention_size: int, window: int | None = None) -> None:
        super().__init__(query_size, memory_size, attention_size, window)
        self.w_a = nn.Linear(query_size, attention_size, bias=False)
        self.u_a = nn.Linear(memory_size, attention_size, bias=False)
        self.v_a = nn.Linear(attention_size, 1, bias=False)

    def project_keys(self, memory: Tensor) -> Tensor:
        return self.u_a(memory)  # (B, S, A)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return self.v_a(torch.tanh(self.w_a(query).unsqueeze(1) + keys)).squeeze(-1)  # (B, S)


class ConcatAttention(AdditiveAttention):
    """Luong eq. (8), concat: score(h_t, h_s) = v_a^T tanh(W_a [h_t; h_s]).

    W_a [h_t; h_s] = W_q h_t + W_k h_s, so this is the additive score computed from the *current*
    state h_t; the Luong decoder supplies that query.
    """


class DotAttention(Attention):
    """Luong eq. (8), dot: score(h_t, h_s) = h_t^T h_s. Needs Hq == Hm (checked in the config)."""

    @staticmethod
    def size_problem(query_size: int, memory_size: int) -> str | None:
        if query_size == memory_size:
            return None
        return (f"it scores h_t . h_s, so model.dec_hidden ({query_size}) must equal the encoder memory size "
                f"({memory_size} = model.enc_hidden x directions); set model.dec_hidden={memory_size} or use "
                "luong_general")

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)  # (B, S)


class GeneralAttention(Attention):
    """Luong eq. (8), general: score(h_t, h_s) = h_t^T W_a h_s; W_a h_s is the projected key."""

    def __init__(self, query_size: int, memory_size: int, attention_size: int, window: int | None = None) -> None:
        super().__init__(query_size, memory_size, attention_size, window)
        self.w_a = nn.Linear(memory_size, query_size, bias=False)

    def project_keys(self, memory: Tensor) -> Tensor:
        return self.w_a(memory)  # (B, S, Hq)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)  # (B, S)


@dataclass(frozen=True)
class Variant:
    """A registered attention: its score function and the decoder wiring of its paper."""

    score: type[Attention] | None  # None: no attention at all
    wiring: str  # the decoder (seq2seq/decoder.py, DECODERS): "bahdanau", "luong" or "none"


# The registry: what model/attention= accepts (ModelConfig checks names and sizes against it) and, through
# the wiring, which decoder is built and how wide its output is.
ATTENTIONS: dict[str, Variant] = {
    "bahdanau": Variant(AdditiveAttention, "bahdanau"),
    "luong_concat": Variant(ConcatAttention, "luong"),
    "luong_dot": Variant(DotAttention, "luong"),
    "luong_general": Variant(GeneralAttention, "luong"),
    "none": Variant(None, "none"),
}


def variant(name: str) -> Variant:
    """The registered attention called ``name``; an unknown name lists the right ones."""
    if name not in ATTENTIONS:
        raise ConfigError(f"unknown attention {name!r} (model/attention=...); choose one of "
                          f"{', '.join(sorted(ATTENTIONS))}")
    return ATTENTIONS[name]


def build_attention(name: str, query_size: int, memory_size: int, attention_size: int,
                    window: int | None = None) -> Attention:
    """The attention called ``name`` (a name with a score function; ModelConfig checked it)."""
    score = ATTENTIONS[name].score
    assert score is not None, f"{name} has no score function"
    return score(query_size, memory_size, attention_size, window)
