"""BERT4Rec (Sun et al., CIKM'19): a bidirectional transformer trained by masked item prediction;
it predicts the next item as the masked position appended after the history.

Shared settings (dropout, FFN size, init, tied output) are listed in transformer.py.
Choices (the paper, its TensorFlow code and RecBole's version differ):
- the mask token is id n_items + 1 (an extra embedding row); `item_embeddings()` returns rows
  0..n_items only, so the mask is never scored or recommended;
- training sample: the target is appended after the history, then every real position is masked
  independently with probability `mask_ratio` (Cloze). With probability `ft_ratio` per sequence the
  sample instead masks only the appended target, the paper's remedy for the mismatch between Cloze
  training and next-item prediction. RecBole has the same knob: absent up to 1.1, then in 1.2.0
  and 1.2.1 MaskItemSequence (recbole/data/transform.py) reads `ft_ratio`, which BERT4Rec.yaml
  sets to 0.5, so it is on there by default as here, but RecBole draws it once per batch and masks
  the history's last item (see the RecBole options below). A Cloze sample that drew no mask masks
  the appended target, so every sequence contributes to the loss; with n real positions the target
  is masked with probability ft_ratio + (1 - ft_ratio) * (r + (1 - r)^n), r = mask_ratio;
- loss: cross-entropy over all items at the masked positions, averaged over them. Masks are drawn
  from torch's global RNG, so seeding the run makes training deterministic;
- the masked positions' states pass through an output head (Linear, GELU, LayerNorm) as in the
  original and RecBole; the per-item output bias of the original and of RecBole 1.2 is off by
  default (`output_bias`);
- the appended position needs room: a history that fills max_length loses its oldest item (the
  model sees at most max_length - 1 history items); narrower inputs are widened by one column;
- every Cloze position becomes [mask] (no BERT-style random or kept replacements), as in RecBole.

RecBole 1.2.1's BERT4Rec (recbole/model/sequential_recommender/bert4rec.py and MaskItemSequence in
recbole/data/transform.py) differs in four ways that change accuracy; each is an option, off by
default. masking="history", ft_scope="batch", output_bias=True, eval_drop_oldest=True together
(with the default mask_ratio 0.2 and ft_ratio 0.5) train and score as RecBole 1.2.1 does:
- masking="history": the sample's target is not appended and not used. Cloze masks the history's
  own real positions (transform.py lines 141-156); a fine-tune sample masks the history's last item
  (_append_mask_last, lines 79-97) and predicts it from the items before it. A Cloze sample that
  drew no mask contributes nothing. Two RecBole details come along: a masked position 0 is
  replaced by [mask] but carries no loss (bert4rec.py counts only MASK_INDEX > 0, lines 207-212),
  and only the last int(mask_ratio * max_length) masked positions of a row carry a loss
  (_padding_sequence keeps the last ones; when that is 0 RecBole cannot build the batch, and here
  every masked position counts). A batch with no labelled position gives a zero loss (RecBole's
  would be 0/0). Since a sample's own target is never read, each user's last training item is
  never a label, as in RecBole (no training history contains it);
- ft_scope="batch": one draw per batch decides fine-tune versus Cloze for every sequence in it
  (transform.py line 138, once per collate call), instead of one draw per sequence;
- output_bias=True: a learned per-item bias, zero at init, is added to every item's score in the
  loss and at evaluation (bert4rec.py line 86 and lines 203-206, 225, 240). The contract's scores
  stay rep . e_i: forward() returns [h, 1] and item_embeddings() returns [e_i, b_i], so both have
  width hidden_size + 1;
- eval_drop_oldest=True: at evaluation (forward) every history drops its oldest item before the
  mask is appended, not only a history that fills max_length (reconstruct_test_data, lines
  109-120, appends the mask column and then cuts column 0), so a one-item history is scored from
  [mask] alone and every item sits one position earlier than in training.
RecBole's loss also keeps the padding id's logit in the softmax; here it is always -inf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from glintru.models.base import ModelConfig, normal_init, padding_mask
from glintru.models.transformer import (
    SelfAttention,
    TransformerConfig,
    TransformerLayer,
    TransformerRecommender,
)


@dataclass
class BERT4RecConfig(TransformerConfig):
    """BERT4Rec hyperparameters: Table 5 plus the masking scheme."""

    mask_ratio: float = 0.2
    ft_ratio: float = 0.5
    masking: str = "appended"
    ft_scope: str = "sequence"
    output_bias: bool = False
    eval_drop_oldest: bool = False

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "masking": ("appended", "history"),
        "ft_scope": ("sequence", "batch"),
    }

    def validate(self) -> None:
        super().validate()
        if self.max_length < 2:
            raise ValueError("BERT4Rec needs max_length >= 2 (one history item plus the appended mask)")
        for name in ("mask_ratio", "ft_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]; got {value}")
        for name, choices in self.CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}")


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
    config: BERT4RecConfig

    def __init__(
        self, config: BERT4RecConfig, n_items: int, item_features: dict[str, tuple[np.ndarray, int]] | None = None
    ):
        super().__init__(config, n_items, item_features, n_tokens=n_items + 2)
        self.mask_token = n_items + 1
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
        self.head = OutputHead(d, config.layer_norm_eps)
        normal_init(self, config.initializer_range)
        self.output_bias = nn.Parameter(torch.zeros(n_items + 1)) if config.output_bias else None

    def item_embeddings(self) -> torch.Tensor:
        """[n_items + 1, d], or [n_items + 1, d + 1] with the output bias as the last column."""
        emb = self.item_embedding.weight[: self.n_items + 1]
        if self.output_bias is None:
            return emb
        return torch.cat([emb, self.output_bias.unsqueeze(1).to(emb.dtype)], dim=1)

    def with_bias_input(self, h: torch.Tensor) -> torch.Tensor:
        """[..., d] -> [..., d + 1] with a trailing 1 when there is an output bias (it multiplies
        the bias column of item_embeddings()); unchanged otherwise."""
        if self.output_bias is None:
            return h
        return torch.cat([h, h.new_ones(*h.shape[:-1], 1)], dim=-1)

    def encode(self, item_seq: torch.Tensor, lengths: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, L, d] before the output head (every real position, mask tokens
        included, sees every other one), or [B, d] at index."""
        self.check_width(item_seq)
        keys = padding_mask(item_seq)[:, None, None, :]  # [B, 1, 1, L]
        x = self.embed(item_seq)
        *body, last = self.layers
        for layer in body:
            x = layer(x, keys)
        return last(x, keys, index=index)

    def append(
        self, item_seq: torch.Tensor, lengths: torch.Tensor, tokens: torch.Tensor
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

    def drop_oldest(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RecBole's evaluation input: every row loses its oldest item and ends in [mask] at
        index lengths - 1 (same width); returns (sequence, index of the mask)."""
        self.check_width(item_seq)
        pos = (lengths - 1).clamp(min=0)
        seq = F.pad(item_seq[:, 1:], (0, 1)).scatter(1, pos.unsqueeze(1), self.mask_token)
        return seq, pos

    def forward(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.config.eval_drop_oldest:
            seq, pos = self.drop_oldest(item_seq, lengths)
        else:
            seq, pos = self.append(item_seq, lengths, torch.full_like(lengths, self.mask_token))
        return self.with_bias_input(self.head(self.encode(seq, pos + 1, index=pos)))

    def one_pass_support(self) -> str | None:
        return self.no_one_pass(
            "its attention is bidirectional, so every position's state depends on the items after it, "
            "and a history is read at a [mask] token appended after its last item, which one pass "
            "over a longer sequence never holds there"
        )

    def mask_positions(self, seq: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Boolean [B, L]: which positions of `seq` to replace by [mask] (see module doc). `pos` is
        the fine-tune position: the appended target (masking="appended") or the history's last
        item (masking="history")."""
        cfg = self.config
        B, L = seq.shape
        last = torch.arange(L, device=seq.device).unsqueeze(0) == pos.unsqueeze(1)
        cloze = (torch.rand(B, L, device=seq.device) < cfg.mask_ratio) & seq.ne(0)
        if cfg.masking == "appended":
            cloze = cloze | (last & ~cloze.any(dim=1, keepdim=True))
        draws = B if cfg.ft_scope == "sequence" else 1
        next_only = torch.rand(draws, 1, device=seq.device) < cfg.ft_ratio
        return torch.where(next_only, last, cloze)

    def labelled_positions(self, masked: torch.Tensor) -> torch.Tensor:
        """Boolean [B, L]: the masked positions that carry a loss. All of them, except with
        masking="history": RecBole's position-0 exclusion and per-row cap (see module doc)."""
        if self.config.masking == "appended":
            return masked
        labelled = masked.clone()
        labelled[:, 0] = False
        cap = int(self.config.mask_ratio * self.config.max_length)
        if cap >= 1:
            at_or_after = masked.flip(1).cumsum(1).flip(1)  # masked positions at index >= j
            labelled &= at_or_after <= cap
        return labelled

    def loss(
        self, item_seq: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        """Cross-entropy of the masked items over all items (masked item prediction), averaged over
        the masked positions: a sample has no loss of its own, so `reduction` must be "mean"."""
        if reduction != "mean":
            raise ValueError(
                f"{type(self).__name__}'s masked-item loss is a mean over the masked positions; "
                f"reduction must be 'mean', got {reduction!r}"
            )
        if self.config.masking == "history":
            self.check_width(item_seq)
            seq, pos = item_seq, (lengths - 1).clamp(min=0)
        else:
            seq, pos = self.append(item_seq, lengths, targets)
        masked = self.mask_positions(seq, pos)
        labelled = self.labelled_positions(masked)
        h = self.encode(seq.masked_fill(masked, self.mask_token), pos + 1)
        if not labelled.any():
            return h.sum() * 0.0  # nothing to predict in this batch; keeps the graph for backward()
        labels = seq[labelled]
        rep = self.with_bias_input(self.head(h[labelled]))
        logits = (rep @ self.item_embeddings().t()).float()
        logits[:, 0] = float("-inf")
        return F.cross_entropy(logits, labels)
