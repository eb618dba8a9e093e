"""The training loss: label-smoothed cross-entropy summed over non-PAD target positions, and See et al.
(2017)'s coverage loss (``optim.coverage_loss``).

It equals ``F.cross_entropy(..., ignore_index=PAD, label_smoothing=eps, reduction="sum")`` and its
gradient, but its backward is the closed form softmax(z) - q (q the smoothed target distribution)
in one pass over the (N, V) logits, where autograd's runs nll_loss's and log_softmax's backward
kernels: on a (1472, 8000) batch, forward + backward 37 -> 19 ms without label smoothing (where
PyTorch takes a slow path), the same as PyTorch's 21 ms with it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seq2seq.special import PAD


class _SmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: Tensor, target: Tensor, eps: float) -> Tensor:  # (N, V), (N,) -> ()
        log_probs = logits.log_softmax(-1)  # (N, V)
        keep = target != PAD  # (N,)
        nll = -log_probs.gather(1, target.unsqueeze(1)).squeeze(1)  # (N,)
        # PyTorch's definition: (1 - eps) * nll + eps * mean over the vocabulary of -log p
        per_token = (1 - eps) * nll - eps / logits.size(-1) * log_probs.sum(-1) if eps else nll
        ctx.save_for_backward(log_probs, target, keep)
        ctx.eps = eps
        return per_token.masked_fill(~keep, 0.0).sum()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        log_probs, target, keep = ctx.saved_tensors
        weight = (keep.to(log_probs.dtype) * grad).unsqueeze(1)  # (N, 1): 0 for PAD rows
        grad_logits = log_probs.exp().mul_(weight)  # softmax(z) - q, scaled: the softmax part
        if ctx.eps:
            grad_logits.sub_(weight * (ctx.eps / log_probs.size(-1)))  # the uniform share of q
        grad_logits.scatter_add_(1, target.unsqueeze(1), -(1 - ctx.eps) * weight)  # the one-hot share
        return grad_logits, None, None


def token_loss(logits: Tensor, target: Tensor, label_smoothing: float) -> Tensor:
    """Summed label-smoothed cross-entropy over non-PAD positions. logits (B, T, V), target (B, T)."""
    return _SmoothedCrossEntropy.apply(logits.flatten(0, 1), target.flatten(), float(label_smoothing))


def coverage_loss(weights: Tensor, target: Tensor) -> Tensor:
    """See et al. (2017), eq. (12), summed over non-PAD target steps t: sum_i min(a_i^t, c_i^t), where
    c^t = sum_{t' < t} a^{t'} is the attention each source position has had before step t (eq. 10). It costs
    attending again to what is covered already. weights (B, T, S), target (B, T) -> ()."""
    coverage = weights.cumsum(1) - weights  # (B, T, S) c^t, the steps before t
    per_step = torch.minimum(weights, coverage).sum(-1)  # (B, T)
    return per_step.masked_fill(target == PAD, 0.0).sum()
