"""SASRec (Kang & McAuley, ICDM'18): causal softmax self-attention over the item history.

Choices (the paper's TensorFlow code and RecBole's version differ; we follow RecBole, the framework
GLINT-RU's reference code is written for; shared settings are listed in transformer.py):
- post-LayerNorm blocks with a GELU feed-forward of width `inner_size` (the original normalises
  before each sublayer and uses a ReLU feed-forward of width d);
- cross-entropy over all items with the output tied to the input embedding (the original trains
  with binary cross-entropy against one sampled negative);
- item + learned position embedding, then LayerNorm and dropout (the original scales the item
  embedding by sqrt(d) and has no LayerNorm there);
- no separate padding mask: with right padding every key a real position may see under the causal
  mask is itself real, so the causal mask alone keeps padding out and lets the fused causal kernel
  run. Hidden states at padding positions are unspecified and never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from glintru.models.base import ModelConfig, normal_init, padding_mask
from glintru.models.transformer import (
    SelfAttention,
    TransformerConfig,
    TransformerLayer,
    TransformerRecommender,
)


@dataclass
class SASRecConfig(TransformerConfig):
    """SASRec hyperparameters: Table 5 (d, dropout, max length, 2 layers, 8 heads) plus RecBole's FFN size."""


class SASRec(TransformerRecommender):
    config_class: ClassVar[type[ModelConfig]] = SASRecConfig

    def __init__(
        self, config: SASRecConfig, n_items: int, item_features: dict[str, tuple[np.ndarray, int]] | None = None
    ):
        super().__init__(config, n_items, item_features)
        d = config.hidden_size
        self.layers = nn.ModuleList(
            TransformerLayer(
                SelfAttention(d, config.num_heads, config.dropout),
                d,
                config.inner_size,
                config.dropout,
                config.layer_norm_eps,
            )
            for _ in range(config.num_layers)
        )
        normal_init(self, config.initializer_range)

    def encode(self, item_seq: torch.Tensor, lengths: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, L, d] (position t depends on items 0..t only), or [B, d] at index."""
        self.check_width(item_seq)
        x = self.embed(item_seq)
        *body, last = self.layers
        for layer in body:
            x = layer(x, causal=True)
        if index is None:
            return last(x, causal=True)
        # The causal window of the last real position is exactly the real items.
        return last(x, attn_mask=padding_mask(item_seq)[:, None, None, :], index=index)

    def one_pass_support(self) -> str | None:
        return None  # causal attention and positions counted from the oldest item

    def prefix_outputs(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.encode(item_seq, lengths)
