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

`attention="recbole"` computes what RecBole 1.2.1 computes instead (recbole/model/layers.py,
ItemToInterestAggregation and LightMultiHeadAttention.forward, lines 640-755; the same in v1.0-v1.2),
for rerunning the paper's LightSANs baseline:
- nothing is masked: every position of the row, padding included, enters the interest pooling, the
  item-to-interest attention and the position attention. RecBole pads every row to max_length,
  so this variant pads its input to max_length too (the batch's own width then cannot change a
  result, and the cost is that of full-width rows);
- the padding id's embedding row keeps its N(0, initializer_range) draw, as RecBole's init
  overwrites the zero row that padding_idx starts with (padding_idx then keeps it frozen); the
  padded positions carry that fixed vector, after the embedding LayerNorm, into the attention;
- both attention maps are normalised over the sequence axis of the queries (softmax over dim -2):
  item-to-interest weights sum to one over the positions for each interest, position weights sum
  to one over the query positions for each key position; a real position's weights therefore
  depend on how many padded positions share the normaliser;
- the position logits are scaled twice: by 1/sqrt(2 d_head) on the queries and once more by
  1/sqrt(d_head), i.e. P_q P_k^T / (sqrt(2) d_head);
- the last layer runs at every position (the query-axis softmax needs them all) and the
  representation is read at the last real position, as RecBole's gather_indexes does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from glintru.models.base import ModelConfig, gather_at, normal_init, padding_mask
from glintru.models.transformer import (
    TransformerConfig,
    TransformerLayer,
    TransformerRecommender,
    merge_heads,
    split_heads,
)


@dataclass
class LightSANsConfig(TransformerConfig):
    """LightSANs hyperparameters: Table 5 plus k_interests = 5 (Appendix B)."""

    k_interests: int = 5
    attention: str = "masked"

    ATTENTIONS: ClassVar[tuple[str, ...]] = ("masked", "recbole")
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        name: {**values, "k_interests": 5} for name, values in TransformerConfig.PRESETS.items()
    }

    def validate(self) -> None:
        super().validate()
        if self.k_interests <= 0:
            raise ValueError(f"k_interests must be positive; got {self.k_interests}")
        if self.attention not in self.ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(self.ATTENTIONS)}; got {self.attention!r}")


class InterestAggregation(nn.Module):
    """Pools [B, N, d] into k interests [B, k, d] with a softmax over the real positions (over
    every position when mask is None, as RecBole does)."""

    def __init__(self, hidden_size: int, k_interests: int):
        super().__init__()
        self.theta = nn.Parameter(torch.randn(hidden_size, k_interests))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        logits = x @ self.theta  # [B, N, k]
        if mask is not None:
            logits = logits.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        return logits.softmax(dim=1).transpose(1, 2) @ x


class LowRankAttention(nn.Module):
    """Item-to-interest attention plus decoupled position attention (before residual and norm).

    recbole=True: RecBole's unmasked, query-axis-normalised form (see the module doc).
    """

    def __init__(
        self, hidden_size: int, num_heads: int, k_interests: int, dropout: float, eps: float, recbole: bool = False
    ):
        super().__init__()
        self.h = num_heads
        self.recbole = recbole
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
        if recbole:
            self.pos_scale /= math.sqrt(hidden_size // num_heads)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def position_probs(self, pos: torch.Tensor) -> torch.Tensor:
        """Position-to-position attention [h, N, N] over all N positions (batch independent):
        normalised over the keys, or over the queries with recbole=True."""
        p = self.pos_norm(pos).unsqueeze(0)  # [1, N, d]
        q = split_heads(self.pos_query(p), self.h)[0]
        k = split_heads(self.pos_key(p), self.h)[0]
        return ((q @ k.transpose(-2, -1)) * self.pos_scale).softmax(dim=-2 if self.recbole else -1)

    def forward_recbole(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """RecBole's form over every position of x [B, N, d]: no mask, query-axis softmaxes."""
        q = split_heads(self.query(x), self.h)  # [B, h, N, dh]
        values = self.value(x)
        k = split_heads(self.key_pool(self.key(x), None), self.h)  # [B, h, k, dh]
        v = split_heads(self.value_pool(values, None), self.h)
        weights = ((q @ k.transpose(-2, -1)) * self.item_scale).softmax(dim=-2)  # [B, h, N, k]
        item = self.attn_dropout(weights) @ v
        position = self.position_probs(pos) @ split_heads(values, self.h)  # [h, N, N] @ [B, h, N, dh]
        return self.dropout(self.dense(merge_heads(item + position)))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x [B, N, d], mask [B, N] (True at real items), pos [N, d] position embeddings.

        Returns [B, N, d], or [B, d] with index[B]: only x[b, index[b]] is queried.
        """
        if self.recbole:
            out = self.forward_recbole(x, pos)
            return out if index is None else gather_at(out, index)
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
    config: LightSANsConfig

    def __init__(
        self, config: LightSANsConfig, n_items: int, item_features: dict[str, tuple[np.ndarray, int]] | None = None
    ):
        super().__init__(config, n_items, item_features)
        d = config.hidden_size
        self.layers = nn.ModuleList(
            TransformerLayer(
                LowRankAttention(
                    d,
                    config.num_heads,
                    config.k_interests,
                    config.dropout,
                    config.layer_norm_eps,
                    recbole=config.attention == "recbole",
                ),
                d,
                config.inner_size,
                config.dropout,
                config.layer_norm_eps,
            )
            for _ in range(config.num_layers)
        )
        normal_init(self, config.initializer_range)
        if config.attention == "recbole":
            with torch.no_grad():  # RecBole's init leaves the padding row drawn, not zero
                self.item_embedding.weight[0].normal_(0.0, config.initializer_range)

    def encode(self, item_seq: torch.Tensor, lengths: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, L, d] (real positions depend on real items only), or [B, d] at index.

        With attention="recbole" every row is first padded to max_length, and real positions do
        depend on that padding (RecBole masks nothing); the result keeps the input's width.
        """
        self.check_width(item_seq)
        width = item_seq.size(1)
        if self.config.attention == "recbole":
            item_seq = F.pad(item_seq, (0, self.config.max_length - width))
        mask = padding_mask(item_seq)
        pos = self.positions(item_seq.size(1))
        x = self.embed(item_seq, with_positions=False)
        *body, last = self.layers
        for layer in body:
            x = layer(x, mask, pos)
        out = last(x, mask, pos, index=index)
        return out if index is not None else out[:, :width]

    def one_pass_support(self) -> str | None:
        return self.no_one_pass(
            "its keys and values are pooled into k interests over the whole sequence, and its "
            "position attention reads every position, so each position's state depends on the items "
            "after it"
        )
