"""The output layer and full cross-entropy in one autograd function: the training step's largest cost.

For N targets and V items, scores = rep[N, d] @ items[V, d].T and the loss is logsumexp(scores) -
scores[target]. Autograd through `F.cross_entropy` keeps the log-softmax output, fills a
zero gradient of the same size, scatters into it, and then walks the whole [N, V] block twice more.
Here the backward pass turns the kept scores into softmax probabilities in place, subtracts one at
each target and feeds the two matrix products directly: about half the passes over [N, V] memory,
and no second [N, V] buffer. The padding column (id 0) is never a candidate.
"""

from __future__ import annotations

import torch


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    # bf16/fp16 scores (autocast) are summed in float32; float64 stays float64
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class _ItemCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rep: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        scores = _at_least_float32(rep @ items.t())
        scores[:, 0] = float("-inf")
        lse = torch.logsumexp(scores, dim=1)
        loss = lse - scores.gather(1, targets.unsqueeze(1)).squeeze(1)
        ctx.save_for_backward(rep, items, targets, scores, lse)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        rep, items, targets, scores, lse = ctx.saved_tensors
        # softmax in place over the kept scores (exp(-inf) = 0 keeps the padding column out)
        probs = scores.sub_(lse.unsqueeze(1)).exp_()
        rows = torch.arange(probs.size(0), device=probs.device)
        probs[rows, targets] -= 1.0
        probs.mul_(grad_loss.unsqueeze(1))
        g = probs.to(rep.dtype)
        grad_rep = g @ items if ctx.needs_input_grad[0] else None
        grad_items = g.t() @ rep if ctx.needs_input_grad[1] else None
        return grad_rep, grad_items, None


def fused_item_cross_entropy(rep: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-target losses [N] of targets[n] under rep[n] @ items.T; equal (values and gradients)
    to `F.cross_entropy` over (at least) float32 scores with column 0 at -inf, reduction "none"."""
    return _ItemCrossEntropy.apply(rep, items, targets)
