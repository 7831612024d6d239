"""LinRec (Liu et al., SIGIR'23): the SASRec backbone with softmax attention replaced by linear
attention Q'(K'^T V), so a layer costs O(N d^2) instead of O(N^2 d).

Choices (shared settings such as dropout, FFN size, init and the tied output: transformer.py):
- everything but the attention is SASRec's (learned positions, post-LayerNorm blocks, GELU FFN,
  embedding LayerNorm + dropout, tied output), as in LinRec's RecBole-based reference code;
- the attention is non-causal over the history, as in the reference code. This leaks nothing: the
  representation is read at the last real position and training targets lie after the input.
  `attention_key_norm="cumulative"` is the causal form (position t attends to items 0..t, keys
  normalised over them, computed with running sums), which makes one-pass training exact at any
  depth; with one layer every key norm allows it (only the last layer's queries differ per prefix);
- K' is normalised over the sequence (each column of ELU(K)), as the LinRec paper writes it; the
  reference code normalises each key over its features: `attention_key_norm="feature"`;
- unlike the reference code, padding is masked out of K' and V (`LinearAttention` in layers.py), so
  the result does not depend on how much padding follows the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from glintru.models.base import ModelConfig, padding_mask
from glintru.models.layers import LinearAttention
from glintru.models.transformer import TransformerConfig, TransformerLayer, TransformerRecommender, init_weights


@dataclass
class LinRecConfig(TransformerConfig):
    """LinRec hyperparameters: SASRec's, with linear attention (Table 5: 2 layers, 8 heads)."""

    attention_key_norm: str = "sequence"

    def validate(self) -> None:
        super().validate()
        if self.attention_key_norm not in LinearAttention.KEY_NORMS:
            raise ValueError(
                f"unknown attention_key_norm {self.attention_key_norm!r}; "
                f"choose one of {', '.join(LinearAttention.KEY_NORMS)}"
            )


class LinRec(TransformerRecommender):
    config_class: ClassVar[type[ModelConfig]] = LinRecConfig

    def __init__(self, config: LinRecConfig, n_items: int,
                 item_features: dict[str, tuple[np.ndarray, int]] | None = None):
        super().__init__(config, n_items, item_features)
        d = config.hidden_size
        self.layers = nn.ModuleList(
            TransformerLayer(LinearAttention(d, config.num_heads, config.dropout,
                                             key_norm=config.attention_key_norm), d, config.inner_size,
                             config.dropout, config.layer_norm_eps)
            for _ in range(config.num_layers)
        )
        init_weights(self, config.initializer_range)

    def encode(self, item_seq: torch.Tensor, lengths: torch.Tensor,
               index: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, L, d] (real positions see every real item, no padding), or [B, d] at index."""
        self.check_width(item_seq)
        mask = padding_mask(item_seq)
        x = self.embed(item_seq)
        *body, last = self.layers
        for layer in body:
            x = layer(x, mask)
        return last(x, mask, index=index)

    def one_pass_support(self) -> str | None:
        if self.config.num_layers == 1 or self.config.attention_key_norm == "cumulative":
            return None
        return (f"with num_layers={self.config.num_layers} and attention_key_norm="
                f"{self.config.attention_key_norm!r} the first layers attend to later items, so a "
                "prefix's states differ from the full sequence's; set attention_key_norm='cumulative' "
                "(causal) or num_layers=1")

    def prefix_outputs(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        self.require_one_pass()
        self.check_width(item_seq)
        mask = padding_mask(item_seq)
        x = self.embed(item_seq)
        for layer in self.layers:
            # Earlier layers are causal here (see one_pass_support); the last one reads each
            # position as the end of its prefix.
            x = layer(x, mask, causal=True)
        return x
