"""The training loss equals PyTorch's label-smoothed cross-entropy, value and gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seq2seq.nn.loss import coverage_loss, token_loss
from seq2seq.special import PAD


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_loss_and_gradient_equal_cross_entropy(eps: float) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 7, 50, generator=gen, dtype=torch.float64) * 3
    target = torch.randint(4, 50, (4, 7), generator=gen)
    target[0, 5:] = PAD  # padded positions add nothing, and get no gradient
    target[2, 1:] = PAD
    ours = logits.clone().requires_grad_()
    ref = logits.clone().requires_grad_()
    loss = token_loss(ours, target, eps)
    expected = F.cross_entropy(ref.flatten(0, 1), target.flatten(), ignore_index=PAD, label_smoothing=eps,
                               reduction="sum")
    torch.testing.assert_close(loss, expected)
    (loss * 0.7).backward()
    (expected * 0.7).backward()
    torch.testing.assert_close(ours.grad, ref.grad)
    assert ours.grad[0, 5:].abs().sum() == 0 and ours.grad[2, 1:].abs().sum() == 0


def test_loss_of_an_all_pad_batch_is_zero() -> None:
    logits = torch.randn(2, 3, 10, requires_grad=True)
    loss = token_loss(logits, torch.full((2, 3), PAD), 0.1)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad.abs().sum() == 0


def test_coverage_loss_sums_the_overlap_of_each_step_with_the_attention_before_it() -> None:
    """See et al. (2017), eq. (12): sum over steps t of sum_i min(a_i^t, c_i^t), c^t = sum_{t'<t} a^{t'}."""
    weights = torch.tensor([[[0.8, 0.2, 0.0], [0.5, 0.5, 0.0], [0.1, 0.1, 0.8]]])  # (1, T=3, S=3)
    # t=1: c = 0 -> 0; t=2: c = (.8, .2, 0) -> .5 + .2 = .7; t=3: c = (1.3, .7, 0) -> .1 + .1 + 0 = .2
    assert float(coverage_loss(weights, torch.tensor([[5, 6, 7]]))) == pytest.approx(0.9)
    assert float(coverage_loss(weights, torch.tensor([[5, 6, PAD]]))) == pytest.approx(0.7)  # PAD steps add nothing
    again = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])  # attending twice to one word costs 1
    assert float(coverage_loss(again, torch.tensor([[5, 6]]))) == pytest.approx(1.0)
