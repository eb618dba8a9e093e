"""The attention family: one base class, one subclass per score function, a dict of them, a factory.

The base class masks padding, normalises with a softmax and takes the weighted sum of the memory;
a subclass writes only ``score`` (and ``project_keys`` when part of its score does not depend on the
decoder step, so it is computed once per batch; multi-head attention also its own ``combine``). With
``window=D`` the base class turns any score into Luong et al.'s local-p attention. Which name uses
which class is the registry's business (seq2seq/registry.py).

Shapes: B batch, S source length, Hq query (decoder) size, Hm memory (encoder output) size, A the
hidden size of additive scores and the width multi-head attention's N heads share (d = A / N each).

References: Bahdanau, Cho, Bengio (2015), "Neural Machine Translation by Jointly Learning to Align and
Translate", eq. (5)-(6) and appendix A.1.2; Luong, Pham, Manning (2015), "Effective Approaches to
Attention-based Neural Machine Translation", eq. (7)-(10); Vaswani et al. (2017), "Attention Is All You
Need", eq. (1) and section 3.2.2.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seq2seq.registry import ATTENTIONS


class Attention(nn.Module):
    """Masking, softmax and the weighted sum shared by every score function.

    ``forward(query, keys, memory, mask)`` returns the context (B, Hm) and the weights (B, S). A score
    function may score N heads at once, (B, N, S); the weights returned are then the heads' average.
    """

    def __init__(self, query_size: int, memory_size: int, attention_size: int, window: int | None = None,
                 heads: int = 1) -> None:
        super().__init__()
        self.window = window
        if window is not None:
            # Luong eq. (9): p_t = S * sigmoid(v_p^T tanh(W_p h_t))
            self.w_p = nn.Linear(query_size, attention_size, bias=False)
            self.v_p = nn.Linear(attention_size, 1, bias=False)


    def project_keys(self, memory: Tensor) -> Tensor:
        """The step-independent part of the score, once per batch. (B, S, Hm) -> (B, S, *)."""
        return memory

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        """Unnormalised scores. query (B, Hq), keys (B, S, *) -> (B, S), or (B, N, S) for N heads."""
        raise NotImplementedError

    def combine(self, weights: Tensor, keys: Tensor, memory: Tensor) -> Tensor:
        """The context: the weighted sum of the memory. weights (B, 1, S) -> (B, Hm)."""
        return torch.bmm(weights, memory).squeeze(1)  # (B, Hm)

    def head_weights(self, query: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        """The normalised weights of every head: (B, N, S), N = 1 for a single-head score."""
        scores = self.score(query, keys)  # (B, S) or (B, N, S)
        scores = scores if scores.dim() == 3 else scores.unsqueeze(1)  # (B, N, S)
        gaussian = None
        if self.window is not None:
            mask, gaussian = self._local_window(query, mask)
        weights = torch.softmax(scores.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1)  # (B, N, S)
        if gaussian is not None:
            # Luong eq. (10): a_t(s) = align(h_t, h_s) exp(-(s - p_t)^2 / 2 sigma^2)
            weights = weights * gaussian.unsqueeze(1)
        return weights

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        weights = self.head_weights(query, keys, mask)  # (B, N, S)
        average = weights[:, 0] if weights.size(1) == 1 else weights.mean(1)  # (B, S) the heads' average
        return self.combine(weights, keys, memory), average  # (B, Hm), (B, S)

    def _local_window(self, query: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Local-p: restrict to [p_t - D, p_t + D] and weight by a Gaussian with sigma = D / 2.

        p_t, the positions and the Gaussian are computed in float32 whatever the query's dtype (autocast
        off): in bfloat16 (8 bits of mantissa) p_t would move in steps of 1/4 to 1/2 a position for sources
        of 32 to 128 subwords."""
        lengths = mask.sum(dim=-1, keepdim=True).float()  # (B, 1) true source lengths
        with torch.autocast(query.device.type, enabled=False):  # W_p, v_p in float32 too: p_t = S * sigmoid(.)
            gate = torch.sigmoid(self.v_p(torch.tanh(self.w_p(query.float()))))  # (B, 1)
        p = lengths * gate  # (B, 1) Luong eq. (9)
        positions = torch.arange(mask.size(1), device=mask.device, dtype=torch.float32)  # (S,)
        distance = positions.unsqueeze(0) - p  # (B, S)
        assert self.window is not None
        sigma = self.window / 2.0
        inside = mask & (distance.abs() <= self.window)  # never empty: p_t lies within [0, S]
        return inside, torch.exp(-(distance**2) / (2 * sigma**2)).to(query.dtype)


class AdditiveAttention(Attention):
    """Bahdanau eq. (6) / appendix A.1.2: e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j).

    U_a h_j does not depend on the decoder step, so it is the projected key. With ``coverage`` the score also
    reads the coverage C_{i-1,j} of every source position (Tu et al. 2016, sec. 3.1):
    e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j + V_a C_{i-1,j}); ``cover`` adds V_a C_{i-1,j} to the keys.
    """

    def __init__(self, query_size: int, memory_size: int, attention_size: int, window: int | None = None,
                 heads: int = 1, coverage: bool = False) -> None:
        super().__init__(query_size, memory_size, attention_size, window)
        self.w_a = nn.Linear(query_size, attention_size, bias=False)
        self.u_a = nn.Linear(memory_size, attention_size, bias=False)
        self.v_a = nn.Linear(attention_size, 1, bias=False)
        self.v_c = nn.Linear(1, attention_size, bias=False) if coverage else None  # V_a of the coverage term

    def project_keys(self, memory: Tensor) -> Tensor:
        return self.u_a(memory)  # (B, S, A)

    def cover(self, keys: Tensor, coverage: Tensor) -> Tensor:
        """The keys with the coverage term: U_a h_j + V_a C_{i-1,j}. keys (B, S, A), coverage (B, S)."""
        assert self.v_c is not None, "built without coverage"
        return keys + self.v_c(coverage.unsqueeze(-1))  # (B, S, A)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return self.v_a(torch.tanh(self.w_a(query).unsqueeze(1) + keys)).squeeze(-1)  # (B, S)


class ConcatAttention(AdditiveAttention):
    """Luong eq. (8), concat: score(h_t, h_s) = v_a^T tanh(W_a [h_t; h_s]).

    W_a [h_t; h_s] = W_q h_t + W_k h_s, so this is the additive score computed from the *current*
    state h_t; the Luong decoder supplies that query.
    """


class DotAttention(Attention):
    """Luong eq. (8), dot: score(h_t, h_s) = h_t^T h_s. Needs Hq == Hm (checked in the config)."""


    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)  # (B, S)


class ScaledDotAttention(DotAttention):
    """Vaswani et al. (2017), eq. (1) for one query: score(h_t, h_s) = h_t^T h_s / sqrt(d), d = Hm.

    Dividing by sqrt(d) keeps the scores' variance near 1 whatever the state size, so the softmax does not
    saturate. Needs Hq == Hm like the plain dot score.
    """

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return super().score(query, keys) / keys.size(-1) ** 0.5  # (B, S)


class MultiHeadAttention(Attention):
    """Vaswani et al. (2017), sec. 3.2.2, for one query per step, as the RNN decoder of RNMT+ (Chen et al.
    2018) uses it: N heads of scaled dot-product attention over learned projections,
    head_n = softmax(q W_n^Q (K W_n^K)^T / sqrt(d)) V W_n^V with d = A / N, and
    MultiHead(q, K, V) = [head_1; ...; head_N] W^O, projected back to the memory size Hm.

    K W^K and V W^V do not depend on the decoder step: ``project_keys`` computes both once per batch.
    """

    def __init__(self, query_size: int, memory_size: int, attention_size: int, window: int | None = None,
                 heads: int = 1) -> None:
        super().__init__(query_size, memory_size, attention_size, window)
        self.heads, self.size = heads, attention_size
        self.w_q = nn.Linear(query_size, attention_size, bias=False)  # W^Q of all heads side by side
        self.w_kv = nn.Linear(memory_size, 2 * attention_size, bias=False)  # [W^K, W^V]
        self.w_o = nn.Linear(attention_size, memory_size, bias=False)  # W^O


    def project_keys(self, memory: Tensor) -> Tensor:
        return self.w_kv(memory)  # (B, S, 2A): keys, then values

    def _split(self, x: Tensor) -> Tensor:
        """(B, S, A) -> (B, N, S, A/N)."""
        b, s, _ = x.shape
        return x.view(b, s, self.heads, self.size // self.heads).transpose(1, 2)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        k = self._split(keys[..., : self.size])  # (B, N, S, d)
        q = self.w_q(query).view(query.size(0), self.heads, -1, 1)  # (B, N, d, 1)
        return torch.matmul(k, q).squeeze(-1) / k.size(-1) ** 0.5  # (B, N, S)

    def combine(self, weights: Tensor, keys: Tensor, memory: Tensor) -> Tensor:
        v = self._split(keys[..., self.size:])  # (B, N, S, d)
        heads = torch.matmul(weights.unsqueeze(2), v).squeeze(2)  # (B, N, d)
        return self.w_o(heads.flatten(1))  # (B, Hm)


class GeneralAttention(Attention):
    """Luong eq. (8), general: score(h_t, h_s) = h_t^T W_a h_s; W_a h_s is the projected key."""

    def __init__(self, query_size: int, memory_size: int, attention_size: int, window: int | None = None,
                 heads: int = 1) -> None:
        super().__init__(query_size, memory_size, attention_size, window)
        self.w_a = nn.Linear(memory_size, query_size, bias=False)

    def project_keys(self, memory: Tensor) -> Tensor:
        return self.w_a(memory)  # (B, S, Hq)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)  # (B, S)


# The score classes by name; seq2seq/registry.py (the registry) says which attention uses which.
SCORES: dict[str, type[Attention]] = {cls.__name__: cls for cls in (
    AdditiveAttention, ConcatAttention, DotAttention, GeneralAttention, ScaledDotAttention, MultiHeadAttention)}


def build_attention(name: str, query_size: int, memory_size: int, attention_size: int,
                    window: int | None = None, heads: int = 1, coverage: bool = False) -> Attention:
    """The attention called ``name`` in the registry (one with a score function; ModelConfig checked it);
    ``coverage`` for one whose registry entry takes it."""
    spec = ATTENTIONS[name]
    assert spec.score_class is not None, f"{name} has no score function"
    assert spec.coverage or not coverage, f"{name} takes no coverage"
    score = SCORES[spec.score_class]
    if coverage:  # only the classes whose registry entry says so take the argument
        return score(query_size, memory_size, attention_size, window, heads, coverage=True)  # type: ignore[call-arg]
    return score(query_size, memory_size, attention_size, window, heads)
