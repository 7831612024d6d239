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
  the result does not depend on how much padding follows the history. `variant="reference"`
  reproduces the reference instead (see LinRecConfig).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from glintru.models.base import ModelConfig, normal_init, padding_mask
from glintru.models.layers import (
    REFERENCE_NO_ONE_PASS,
    LinearAttention,
    pad_to_length,
    random_padding_row,
    reference_variant_loss,
)
from glintru.models.transformer import TransformerConfig, TransformerLayer, TransformerRecommender

VARIANTS = ("masked", "reference")


@dataclass
class LinRecConfig(TransformerConfig):
    """LinRec hyperparameters: SASRec's, with linear attention (Table 5: 2 layers, 8 heads).

    The reference code (Applied-Machine-Learning-Lab/LinRec) is RecBole's SASRec run with
    RecBole's layers.py replaced by one whose attention is the linear one and ignores the
    attention mask it is given.
    - variant: "masked" (default): padding never changes a result. "reference": what that code
      does, all at once:
        * padding to L: every input is right-padded to max_length inside the model, as RecBole
          stores every sequence (MAX_ITEM_LIST_LENGTH wide, real items first), so a result
          depends on max_length and not on the batch's width; the position embedding is added
          at every one of the max_length positions, padding included, as in SASRec;
        * no masking: the padding positions' keys and values join every layer's attention sums;
        * a random padding row: SASRec's init draws the whole embedding table from
          N(0, initializer_range), padding row included;
        * the padding id is a candidate in the training loss (RecBole's cross-entropy over the
          whole, tied embedding table); evaluation still never ranks it, nor does RecBole's.
          So the padding row is not frozen: padding_idx=0 zeroes the gradient of the lookup,
          but the loss pushes id 0 down as a never-right candidate, and that moves the row;
        * attention_key_norm defaults to "feature".
      One-pass training is refused: a prefix's representation depends on the padding after it.
    - attention_key_norm: "sequence", "feature" or "cumulative" (module docstring). None
      (default): "feature" for variant="reference", "sequence" otherwise; an explicit value wins.
    """

    variant: str = "masked"
    attention_key_norm: str | None = None

    def __post_init__(self) -> None:
        if self.attention_key_norm is None:
            self.attention_key_norm = "feature" if self.variant == "reference" else "sequence"

    def validate(self) -> None:
        super().validate()
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.attention_key_norm not in LinearAttention.KEY_NORMS:
            raise ValueError(
                f"unknown attention_key_norm {self.attention_key_norm!r}; "
                f"choose one of {', '.join(LinearAttention.KEY_NORMS)}"
            )


class LinRec(TransformerRecommender):
    config_class: ClassVar[type[ModelConfig]] = LinRecConfig
    config: LinRecConfig

    def __init__(
        self, config: LinRecConfig, n_items: int, item_features: dict[str, tuple[np.ndarray, int]] | None = None
    ):
        super().__init__(config, n_items, item_features)
        d = config.hidden_size
        key_norm = config.attention_key_norm
        assert key_norm is not None  # resolved from the variant in LinRecConfig.__post_init__
        self.layers = nn.ModuleList(
            TransformerLayer(
                LinearAttention(d, config.num_heads, config.dropout, key_norm=key_norm),
                d,
                config.inner_size,
                config.dropout,
                config.layer_norm_eps,
            )
            for _ in range(config.num_layers)
        )
        normal_init(self, config.initializer_range)
        if config.variant == "reference":
            random_padding_row(self.item_embedding, config.initializer_range)

    def _inputs(self, item_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(item ids, mask): the batch with its padding masked out, or (reference variant) padded
        to max_length with every position counted as real."""
        self.check_width(item_seq)
        if self.config.variant == "reference":
            item_seq = pad_to_length(item_seq, self.config.max_length)
            return item_seq, torch.ones_like(item_seq, dtype=torch.bool)
        return item_seq, padding_mask(item_seq)

    def encode(self, item_seq: torch.Tensor, lengths: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, L, d] (real positions see every real item, no padding; reference
        variant: L = max_length, padding included), or [B, d] at index."""
        item_seq, mask = self._inputs(item_seq)
        x = self.embed(item_seq)
        *body, last = self.layers
        for layer in body:
            x = layer(x, mask)
        return last(x, mask, index=index)

    def loss(
        self, item_seq: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        return reference_variant_loss(self, item_seq, lengths, targets, reduction)

    def one_pass_support(self) -> str | None:
        cfg = self.config
        if cfg.variant == "reference":
            return self.no_one_pass(REFERENCE_NO_ONE_PASS)
        if cfg.num_layers == 1 or cfg.attention_key_norm == "cumulative":
            return None
        return self.no_one_pass(
            f"with num_layers={cfg.num_layers} and attention_key_norm={cfg.attention_key_norm!r} the "
            "layers below the last attend to later items, so a prefix's states differ from the full "
            "sequence's (for one pass set attention_key_norm='cumulative', which is causal, or "
            "num_layers=1)"
        )

    def prefix_outputs(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        self.require_one_pass()
        item_seq, mask = self._inputs(item_seq)
        x = self.embed(item_seq)
        for layer in self.layers:
            # Earlier layers are causal here (see one_pass_support); the last one reads each
            # position as the end of its prefix.
            x = layer(x, mask, causal=True)
        return x
