"""The fused output layer + cross-entropy equals the plain autograd path, in values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from glintru.models.loss import fused_item_cross_entropy


def plain(rep, items, targets):
    scores = rep @ items.t()
    scores[:, 0] = float("-inf")
    return F.cross_entropy(scores, targets, reduction="none")


@pytest.mark.parametrize("n, v, d", [(1, 2, 3), (37, 101, 16), (300, 2000, 64)])
def test_values_and_gradients_match_the_plain_path(n, v, d):
    g = torch.Generator().manual_seed(n)
    rep = torch.randn(n, d, generator=g, dtype=torch.float64)
    items = torch.randn(v, d, generator=g, dtype=torch.float64) * 0.5
    targets = torch.randint(1, v, (n,), generator=g)
    weights = torch.rand(n, generator=g, dtype=torch.float64)  # a non-uniform upstream gradient
    grads = []
    for fn in (plain, fused_item_cross_entropy):
        r, it = rep.clone().requires_grad_(), items.clone().requires_grad_()
        loss = fn(r, it, targets)
        (loss * weights).sum().backward()
        grads.append((loss.detach(), r.grad, it.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert torch.all(grads[1][2][0] == 0)  # the padding row gets no gradient


def test_float32_and_mean_reduction_agree_with_cross_entropy():
    g = torch.Generator().manual_seed(0)
    rep = torch.randn(64, 32, generator=g, requires_grad=True)
    items = torch.randn(500, 32, generator=g, requires_grad=True)
    targets = torch.randint(1, 500, (64,), generator=g)
    fused = fused_item_cross_entropy(rep, items, targets).mean()
    fused.backward()
    fr, fi = rep.grad.clone(), items.grad.clone()
    rep.grad = items.grad = None
    ref = plain(rep, items, targets).mean()
    ref.backward()
    torch.testing.assert_close(fused, ref)
    torch.testing.assert_close(fr, rep.grad)
    torch.testing.assert_close(fi, items.grad)


def test_bfloat16_scores_are_summed_in_float32():
    g = torch.Generator().manual_seed(1)
    rep, items = torch.randn(8, 16, generator=g).bfloat16(), torch.randn(50, 16, generator=g).bfloat16()
    targets = torch.randint(1, 50, (8,), generator=g)
    loss = fused_item_cross_entropy(rep, items, targets)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, plain(rep.float(), items.float(), targets), rtol=2e-2, atol=2e-2)


def test_no_gradient_asked_for_a_frozen_item_table():
    rep = torch.randn(5, 4, requires_grad=True)
    items = torch.randn(9, 4)  # no grad
    fused_item_cross_entropy(rep, items, torch.tensor([1, 2, 3, 4, 8])).sum().backward()
    assert rep.grad is not None and items.grad is None
