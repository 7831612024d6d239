"""BERT4Rec (Sun et al., CIKM'19): a bidirectional transformer trained by masked item prediction;
it predicts the next item as the masked position appended after the history.

Shared settings (dropout, FFN size, init, tied output) are listed in transformer.py.
Choices (the paper, its TensorFlow code and RecBole's version differ):
- the mask token is id n_items + 1 (an extra embedding row); `item_embeddings()` returns rows
  0..n_items only, so the mask is never scored or recommended;
- training sample: the target is appended after the history, then every real position is masked
  independently with probability `mask_ratio` (Cloze). With probability `ft_ratio` per sequence the
  sample instead masks only the appended target, the paper's remedy for the mismatch between Cloze
  training and next-item prediction (RecBole's `ft_ratio`, there off by default). A Cloze sample
  that drew no mask masks the appended target, so every sequence contributes to the loss; with n
  real positions the target is masked with probability
  ft_ratio + (1 - ft_ratio) * (r + (1 - r)^n), r = mask_ratio;
- loss: cross-entropy over all items at the masked positions, averaged over them. Masks are drawn
  from torch's global RNG, so seeding the run makes training deterministic;
- the masked positions' states pass through an output head (Linear, GELU, LayerNorm) as in the
  original and RecBole; the original's per-item output bias is left out, because the model contract
  scores items as rep . e_i and sampled evaluation reads `item_embeddings()` directly;
- the appended position needs room: a history that fills max_length loses its oldest item (the
  model sees at most max_length - 1 history items); narrower inputs are widened by one column;
- every Cloze position becomes [mask] (no BERT-style random or kept replacements), as in RecBole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from glintru.models.base import ModelConfig, padding_mask
from glintru.models.transformer import (
    SelfAttention,
    TransformerConfig,
    TransformerLayer,
    TransformerRecommender,
    init_weights,
)


@dataclass
class BERT4RecConfig(TransformerConfig):
    """BERT4Rec hyperparameters: Table 5 plus the masking scheme."""

    mask_ratio: float = 0.2
    ft_ratio: float = 0.5

    def validate(self) -> None:
        super().validate()
        if self.max_length < 2:
            raise ValueError("BERT4Rec needs max_length >= 2 (one history item plus the appended mask)")
        for name in ("mask_ratio", "ft_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]; got {value}")


class OutputHead(nn.Module):
    """Linear -> GELU -> LayerNorm on a masked position's state before scoring."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.gelu(self.dense(x)))


class BERT4Rec(TransformerRecommender):
    config_class: ClassVar[type[ModelConfig]] = BERT4RecConfig

    def __init__(self, config: BERT4RecConfig, n_items: int,
                 item_features: dict[str, tuple[np.ndarray, int]] | None = None):
        super().__init__(config, n_items, item_features, n_tokens=n_items + 2)
        self.mask_token = n_items + 1
        d = config.hidden_size
        self.layers = nn.ModuleList(
            TransformerLayer(SelfAttention(d, config.num_heads, config.dropout), d, config.inner_size,
                             config.dropout, config.layer_norm_eps)
            for _ in range(config.num_layers)
        )
        self.head = OutputHead(d, config.layer_norm_eps)
        init_weights(self, config.initializer_range)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_embedding.weight[: self.n_items + 1]

    def encode(self, item_seq: torch.Tensor, lengths: torch.Tensor,
               index: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, L, d] before the output head (every real position, mask tokens
        included, sees every other one), or [B, d] at index."""
        self.check_width(item_seq)
        keys = padding_mask(item_seq)[:, None, None, :]  # [B, 1, 1, L]
        x = self.embed(item_seq)
        *body, last = self.layers
        for layer in body:
            x = layer(x, keys)
        return last(x, keys, index=index)

    def append(self, item_seq: torch.Tensor, lengths: torch.Tensor, tokens: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Put tokens[b] right after the last real item of row b; returns (sequence, its index).

        The result is one column wider unless the input already spans max_length, in which case
        full rows drop their oldest item to make room.
        """
        self.check_width(item_seq)
        width = item_seq.size(1)
        if width < self.config.max_length:
            seq = F.pad(item_seq, (0, 1))
            pos = lengths
        else:
            full = (lengths >= width).unsqueeze(1)
            seq = torch.where(full, item_seq.roll(-1, dims=1), item_seq)
            pos = lengths.clamp(max=width - 1)
        seq = seq.scatter(1, pos.unsqueeze(1), tokens.unsqueeze(1).to(seq.dtype))
        return seq, pos

    def forward(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        masks = torch.full_like(lengths, self.mask_token)
        seq, pos = self.append(item_seq, lengths, masks)
        return self.head(self.encode(seq, pos + 1, index=pos))

    def mask_positions(self, seq: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Boolean [B, L]: which positions of the target-appended `seq` to mask (see module doc)."""
        cfg = self.config
        B, L = seq.shape
        last = torch.arange(L, device=seq.device).unsqueeze(0) == pos.unsqueeze(1)
        cloze = (torch.rand(B, L, device=seq.device) < cfg.mask_ratio) & seq.ne(0)
        cloze = cloze | (last & ~cloze.any(dim=1, keepdim=True))
        next_only = (torch.rand(B, 1, device=seq.device) < cfg.ft_ratio)
        return torch.where(next_only, last, cloze)

    def loss(self, item_seq: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the masked items over all items (masked item prediction)."""
        seq, pos = self.append(item_seq, lengths, targets)
        masked = self.mask_positions(seq, pos)
        labels = seq[masked]
        h = self.encode(seq.masked_fill(masked, self.mask_token), pos + 1)
        logits = (self.head(h[masked]) @ self.item_embeddings().t()).float()
        logits[:, 0] = float("-inf")
        return F.cross_entropy(logits, labels)
