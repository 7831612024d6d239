"""LightSANs (Fan et al., SIGIR'21): low-rank self-attention in which each position attends to
k latent interests pooled from the history, plus decoupled position-to-position attention.

Shared settings (dropout, FFN size, init, tied output) are listed in transformer.py.
Choices (the paper and RecBole's version, written by the paper's authors, differ):
- keys and values are pooled into k interests by a learned softmax over the sequence of x . theta
  (one theta [d, k] for keys, one for values, shared by all heads, theta ~ N(0, 1) as in RecBole);
  padding is excluded from that softmax. RecBole applies no padding mask anywhere, so its output
  depends on how much padding follows the history; ours does not;
- item-to-interest attention normalises over the k interests for each position (the usual
  row-wise softmax); RecBole normalises over the sequence axis instead, which lets padded
  positions share the weight;
- decoupled position attention: positions (LayerNorm, then their own query/key projections) give
  softmax(P_q P_k^T / sqrt(2 d_head)) over the real keys, which weights the per-position values;
  its output is added to the item-to-interest output, as in RecBole. The 1/sqrt(2 d_head) scaling
  is TUPE's, which this encoding follows (RecBole divides once more by sqrt(d_head)); the softmax
  runs over keys (RecBole normalises over queries); no dropout on these probabilities, as in RecBole;
- item embeddings get no position added (positions enter only through the decoupled attention),
  followed by LayerNorm and dropout; post-LayerNorm blocks with a GELU FFN, tied output;
- both attentions are non-causal over the history, as in RecBole; nothing leaks
  because the representation is read at the last real position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from glintru.models.base import ModelConfig, padding_mask
from glintru.models.transformer import (
    TransformerConfig,
    TransformerLayer,
    TransformerRecommender,
    gather_at,
    init_weights,
    merge_heads,
    split_heads,
)


@dataclass
class LightSANsConfig(TransformerConfig):
    """LightSANs hyperparameters: Table 5 plus k_interests = 5 (Appendix B)."""

    k_interests: int = 5

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        name: {**values, "k_interests": 5} for name, values in TransformerConfig.PRESETS.items()
    }

    def validate(self) -> None:
        super().validate()
        if self.k_interests <= 0:
            raise ValueError(f"k_interests must be positive; got {self.k_interests}")


class InterestAggregation(nn.Module):
    """Pools [B, N, d] into k interests [B, k, d] with a softmax over the real positions."""

    def __init__(self, hidden_size: int, k_interests: int):
        super().__init__()
        self.theta = nn.Parameter(torch.randn(hidden_size, k_interests))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = (x @ self.theta).masked_fill(~mask.unsqueeze(-1), float("-inf"))  # [B, N, k]
        return logits.softmax(dim=1).transpose(1, 2) @ x


class LowRankAttention(nn.Module):
    """Item-to-interest attention plus decoupled position attention (before residual and norm)."""

    def __init__(self, hidden_size: int, num_heads: int, k_interests: int, dropout: float, eps: float):
        super().__init__()
        self.h = num_heads
        self.item_scale = 1.0 / math.sqrt(hidden_size // num_heads)
        self.attn_dropout = nn.Dropout(dropout)
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.key_pool = InterestAggregation(hidden_size, k_interests)
        self.value_pool = InterestAggregation(hidden_size, k_interests)
        self.pos_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.pos_query = nn.Linear(hidden_size, hidden_size)
        self.pos_key = nn.Linear(hidden_size, hidden_size)
        self.pos_scale = 1.0 / math.sqrt(2 * hidden_size // num_heads)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def position_probs(self, pos: torch.Tensor) -> torch.Tensor:
        """Position-to-position attention [h, N, N] over all N positions (batch independent)."""
        p = self.pos_norm(pos).unsqueeze(0)  # [1, N, d]
        q = split_heads(self.pos_query(p), self.h)[0]
        k = split_heads(self.pos_key(p), self.h)[0]
        return ((q @ k.transpose(-2, -1)) * self.pos_scale).softmax(dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor,
                index: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, N, d], mask [B, N] (True at real items), pos [N, d] position embeddings.

        Returns [B, N, d], or [B, d] with index[B]: only x[b, index[b]] is queried.
        """
        xq = x if index is None else gather_at(x, index).unsqueeze(1)
        q = split_heads(self.query(xq), self.h)  # [B, h, n, dh]
        values = self.value(x)
        k = split_heads(self.key_pool(self.key(x), mask), self.h)  # [B, h, k, dh]
        v = split_heads(self.value_pool(values, mask), self.h)
        # Only k keys: a plain product beats the fused kernel, which is tuned for long key axes.
        weights = ((q @ k.transpose(-2, -1)) * self.item_scale).softmax(dim=-1)  # [B, h, n, k]
        item = self.attn_dropout(weights) @ v

        # Restricting a softmax to the real keys equals renormalising it over them, so the [h, N, N]
        # probabilities stay batch independent (computed once, not per sequence): the masked
        # softmax is (P @ (m V)) / (P @ m).
        probs = self.position_probs(pos)
        m = mask.to(values.dtype)
        vm = split_heads(values * m.unsqueeze(-1), self.h)  # [B, h, N, dh]
        if index is None:
            # Batch folded into the columns: one [h, N, N] @ [h, N, B*dh] product instead of
            # broadcasting P over the batch, which would materialise B copies of it.
            B, h, N, dh = vm.shape
            num = (probs @ vm.permute(1, 2, 0, 3).reshape(h, N, B * dh)).view(h, N, B, dh).permute(2, 0, 1, 3)
            den = (probs @ m.t()).permute(2, 0, 1).unsqueeze(-1)  # [B, h, N, 1]
        else:
            rows = probs[:, index].transpose(0, 1).unsqueeze(2)  # [B, h, 1, N]
            num = rows @ vm
            den = rows @ m[:, None, :, None]
        position = num / den.clamp_min(torch.finfo(den.dtype).tiny)
        out = merge_heads(item + position)
        return self.dropout(self.dense(out if index is None else out.squeeze(1)))


class LightSANs(TransformerRecommender):
    config_class: ClassVar[type[ModelConfig]] = LightSANsConfig

    def __init__(self, config: LightSANsConfig, n_items: int,
                 item_features: dict[str, tuple[np.ndarray, int]] | None = None):
        super().__init__(config, n_items, item_features)
        d = config.hidden_size
        self.layers = nn.ModuleList(
            TransformerLayer(LowRankAttention(d, config.num_heads, config.k_interests, config.dropout,
                                              config.layer_norm_eps),
                             d, config.inner_size, config.dropout, config.layer_norm_eps)
            for _ in range(config.num_layers)
        )
        init_weights(self, config.initializer_range)

    def encode(self, item_seq: torch.Tensor, lengths: torch.Tensor,
               index: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, L, d] (real positions depend on real items only), or [B, d] at index."""
        self.check_width(item_seq)
        mask = padding_mask(item_seq)
        pos = self.positions(item_seq.size(1))
        x = self.embed(item_seq, with_positions=False)
        *body, last = self.layers
        for layer in body:
            x = layer(x, mask, pos)
        return last(x, mask, pos, index=index)
