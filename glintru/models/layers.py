"""Blocks shared by several models: masked linear attention (LinRec), feed-forward."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LinearAttention(nn.Module):
    """LinRec's linear attention, O(N d^2): A = Q' (K'^T V) / sqrt(d_head) per head.

    Q' = L2-normalise ELU(Q) over features (rows). K' = L2-normalise ELU(K) over the sequence
    (columns of K, as LinRec's paper writes it: key_norm="sequence"), or over features of each
    position (key_norm="feature", what the LinRec and GLINT-RU reference code computes).
    Padding positions are zeroed in K' (so their rows of V add nothing) before the sums: the
    output at real positions does not depend on how much padding follows.
    """

    KEY_NORMS = ("sequence", "feature")

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0, eps: float = 1e-12,
                 key_norm: str = "sequence"):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        if key_norm not in self.KEY_NORMS:
            raise ValueError(f"unknown key_norm {key_norm!r}; choose one of {', '.join(self.KEY_NORMS)}")
        self.h = num_heads
        self.dh = hidden_size // num_heads
        self.eps = eps
        self.key_norm = key_norm
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """x[B, N, d], mask[B, N] (True at real items) -> [B, N, d] (before residual/norm).

        With index[B], only the rows x[b, index[b]] are queried and the result is [B, d]: the
        keys and values still cover the whole sequence, so it equals the full output gathered
        at index, for a fraction of the cost (a model that only needs its last position).
        """
        B, N, d = x.shape
        # Zero keys at padding: those rows then add nothing to K'^T V nor to the column norms.
        k = F.elu(self.key(x)) * mask.unsqueeze(-1).to(x.dtype)
        v = self.value(x)
        if self.key_norm == "feature":
            k = F.normalize(k.view(B, N, self.h, self.dh), dim=-1, eps=self.eps).view(B, N, d)
        # One batched product per head on strided views: no head-major copies of K and V.
        heads = [slice(i * self.dh, (i + 1) * self.dh) for i in range(self.h)]
        kv = [k[..., s].transpose(1, 2) @ v[..., s] for s in heads]  # h x [B, dh, dh]
        if self.key_norm == "sequence":
            # Dividing column i of K by its norm over the sequence divides row i of K^T V by it:
            # done on the small [dh, dh] products rather than on the [N, d] keys.
            inv = 1.0 / k.norm(dim=1).clamp_min(self.eps).unsqueeze(-1)  # [B, d, 1]
            kv = [kv_h * inv[:, s] for kv_h, s in zip(kv, heads)]
        xq = x if index is None else x[torch.arange(B, device=x.device), index].unsqueeze(1)
        n = xq.size(1)
        q = F.normalize(F.elu(self.query(xq)).view(B, n, self.h, self.dh), dim=-1, eps=self.eps).view(B, n, d)
        out = torch.cat([q[..., s] @ kv_h for kv_h, s in zip(kv, heads)], dim=-1) / math.sqrt(self.dh)
        if index is not None:
            out = out.squeeze(1)
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
