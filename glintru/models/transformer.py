"""Pieces shared by the transformer baselines (SASRec, BERT4Rec, LinRec, LightSANs): config,
softmax self-attention, the post-LayerNorm block, the item + position embedding and the base model.

Choices common to the four models follow RecBole, the framework GLINT-RU's reference code is
written for:
- one `dropout` (Table 5) is used for the embedding, attention probabilities and residual branches
  (RecBole has separate hidden/attention dropouts, both set to the same value by default);
- the feed-forward inner size defaults to RecBole's 256 whatever d is (4d at d=64, 2d at d=128);
- weights are drawn from N(0, 0.02) with LayerNorm at (1, 0) and LayerNorm eps 1e-12;
- the output layer is tied to the input item embedding (scores = rep . e_i).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from glintru.models.base import ModelConfig, SequentialRecommender, gather_at
from glintru.models.layers import FeedForward


@dataclass
class TransformerConfig(ModelConfig):
    """Fields shared by the transformer baselines; Table 5 gives 2 layers and 8 heads everywhere."""

    num_heads: int = 8
    inner_size: int = 256
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "ml-1m": {"num_layers": 2, "num_heads": 8},
        "beauty": {"num_layers": 2, "num_heads": 8},
        "video-games": {"num_layers": 2, "num_heads": 8},
    }

    def validate(self) -> None:
        super().validate()
        if self.num_heads <= 0 or self.hidden_size % self.num_heads:
            raise ValueError(
                f"num_heads must divide hidden_size; got hidden_size={self.hidden_size}, "
                f"num_heads={self.num_heads} (e.g. set num_heads=2)"
            )
        if self.inner_size <= 0:
            raise ValueError(f"inner_size must be positive; got {self.inner_size}")


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, N, d] -> [B, h, N, d/h]."""
    B, N, d = x.shape
    return x.view(B, N, num_heads, d // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, h, N, dh] -> [B, N, h * dh]."""
    B, h, N, dh = x.shape
    return x.transpose(1, 2).reshape(B, N, h * dh)


class SelfAttention(nn.Module):
    """Multi-head softmax self-attention (returns the sublayer output before residual and norm).

    `attn_mask` is a boolean mask broadcastable to [B, h, n, N] (True = may attend) or None;
    `causal=True` uses the fused causal kernel instead. With index[B] only x[b, index[b]] is
    queried and the result is [B, d] (keys and values still span the sequence).
    """

    def __init__(self, hidden_size: int, num_heads: int, dropout: float):
        super().__init__()
        self.h = num_heads
        self.p = dropout
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        causal: bool = False,
        index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        p = self.p if self.training else 0.0
        if index is None:
            q, k, v = (split_heads(t, self.h) for t in self.qkv(x).chunk(3, dim=-1))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal, dropout_p=p)
            return self.dropout(self.dense(merge_heads(out)))
        if causal:
            raise ValueError("a single queried position takes an explicit attn_mask, not causal=True")
        d = x.size(-1)
        w, b = self.qkv.weight, self.qkv.bias
        k, v = (split_heads(t, self.h) for t in F.linear(x, w[d:], b[d:]).chunk(2, dim=-1))
        q = split_heads(F.linear(gather_at(x, index).unsqueeze(1), w[:d], b[:d]), self.h)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        return self.dropout(self.dense(merge_heads(out).squeeze(1)))


class TransformerLayer(nn.Module):
    """Post-LayerNorm block: x = LN(x + Attn(x, ...)); x = LN(x + FFN(x)) with a GELU FFN.

    `attention` is any module mapping (x, *args, index=None) -> [B, N, d] (or [B, d] at index); the
    extra arguments pass through, so the same block carries softmax, linear (LinRec) or low-rank
    (LightSANs) attention. With index[B] the block runs at x[b, index[b]] only and returns [B, d],
    equal to the full block's output gathered there.
    """

    def __init__(self, attention: nn.Module, hidden_size: int, inner_size: int, dropout: float, eps: float):
        super().__init__()
        self.attention = attention
        self.attn_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.ffn = FeedForward(hidden_size, inner_size, dropout)
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, x: torch.Tensor, *args: Any, index: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if index is None:
            x = self.attn_norm(x + self.attention(x, *args, **kwargs))
        else:
            x = self.attn_norm(gather_at(x, index) + self.attention(x, *args, index=index, **kwargs))
        return self.ffn_norm(x + self.ffn(x))


class TransformerRecommender(SequentialRecommender):
    """Item embedding (+ learned positions), LayerNorm, dropout, then `encode`'s layers.

    Subclasses implement `encode(item_seq, lengths, index=None)`: hidden states [B, L, d], or with
    index[B] the last layer run at x[b, index[b]] only, [B, d]. The representation is the state at
    the last real position; forward computes just that row in the last layer (the loss and the
    evaluation read nothing else), which equals `encode(...)` gathered there. Inputs may be narrower
    than max_length (right padding) but never wider: the position table has max_length rows.
    """

    config_class: ClassVar[type[ModelConfig]] = TransformerConfig

    def __init__(
        self,
        config: TransformerConfig,
        n_items: int,
        item_features: dict[str, tuple[np.ndarray, int]] | None = None,
        n_tokens: int | None = None,
    ):
        super().__init__(config, n_items, item_features)
        d = config.hidden_size
        self.item_embedding = nn.Embedding(n_tokens if n_tokens is not None else n_items + 1, d, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_length, d)
        self.emb_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.emb_dropout = nn.Dropout(config.dropout)

    def check_width(self, item_seq: torch.Tensor) -> None:
        if item_seq.dim() != 2:
            raise ValueError(f"item_seq must be [B, L]; got shape {tuple(item_seq.shape)}")
        if item_seq.size(1) > self.config.max_length:
            raise ValueError(
                f"{type(self).__name__}: sequence width {item_seq.size(1)} exceeds max_length "
                f"{self.config.max_length}; truncate inputs to the last max_length items"
            )

    def positions(self, width: int) -> torch.Tensor:
        """Learned position embeddings [width, d]; position 0 is the oldest item (right padding)."""
        return self.position_embedding.weight[:width]

    def embed(self, item_seq: torch.Tensor, with_positions: bool = True) -> torch.Tensor:
        x = self.item_embedding(item_seq)
        if with_positions:
            x = x + self.positions(item_seq.size(1))
        return self.emb_dropout(self.emb_norm(x))

    @abc.abstractmethod
    def encode(self, item_seq: torch.Tensor, lengths: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, L, d] at every position, or [B, d] at index (see the class doc)."""

    def forward(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.encode(item_seq, lengths, index=(lengths - 1).clamp(min=0))
