"""Blocks shared by several models: masked linear attention (LinRec), feed-forward."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LinearAttention(nn.Module):
    """LinRec's linear attention, O(N d^2): A = Q' (K'^T V) / sqrt(d_head) per head.

    Q' = L2-normalise ELU(Q) over features (rows), K' = L2-normalise ELU(K) over the sequence
    (columns). Padding positions are zeroed in K' and V before the sums, so the output at real
    positions does not depend on how much padding follows.
    """

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0, eps: float = 1e-12):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        self.h = num_heads
        self.dh = hidden_size // num_heads
        self.eps = eps
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x[B, N, d], mask[B, N] (True at real items) -> [B, N, d] (before residual/norm)."""
        B, N, _ = x.shape
        m = mask.unsqueeze(1).unsqueeze(-1).to(x.dtype)  # [B, 1, N, 1]

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, N, self.h, self.dh).transpose(1, 2)  # [B, h, N, dh]

        q = F.elu(heads(self.query(x)))
        k = F.elu(heads(self.key(x))) * m
        v = heads(self.value(x)) * m
        q = q / q.norm(dim=-1, keepdim=True).clamp_min(self.eps)
        k = k / k.norm(dim=-2, keepdim=True).clamp_min(self.eps)
        kv = k.transpose(-2, -1) @ v  # [B, h, dh, dh]
        out = (q @ kv) / math.sqrt(self.dh)
        out = out.transpose(1, 2).reshape(B, N, self.h * self.dh)
        return self.dropout(self.dense(out))


class FeedForward(nn.Module):
    """Two-layer position-wise feed-forward with GELU (the transformer baselines' FFN)."""

    def __init__(self, hidden_size: int, inner_size: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, inner_size)
        self.fc2 = nn.Linear(inner_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(F.gelu(self.fc1(x))))
