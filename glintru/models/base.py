"""The model contract shared by GLINT-RU and every baseline, and the per-dataset presets."""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from glintru.models.loss import fused_item_cross_entropy
from glintru.models.presets import DATASET_PRESETS
from glintru.settings import check_fields


@dataclass
class ModelConfig:
    """Fields every model has. Subclasses add their own and may override `PRESETS`."""

    hidden_size: int = 64
    max_length: int = 50
    dropout: float = 0.2
    num_layers: int = 2

    # Per-preset overrides specific to one model, applied on top of DATASET_PRESETS.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides: Any) -> ModelConfig:
        """Defaults, then the dataset preset, then the model's preset entry, then overrides."""
        values: dict[str, Any] = {}
        if preset is not None:
            if preset not in DATASET_PRESETS:
                raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(DATASET_PRESETS)}")
            values.update({k: v for k, v in DATASET_PRESETS[preset].items() if k in cls.field_names()})
            values.update(cls.PRESETS.get(preset, {}))
        unknown = sorted(set(overrides) - cls.field_names())
        if unknown:
            raise ValueError(
                f"{cls.__name__} has no field(s) {', '.join(unknown)}; "
                f"valid fields: {', '.join(sorted(cls.field_names()))}"
            )
        # typed before validate(), whose comparisons would fail on a string with a raw TypeError
        values.update(check_fields(cls, overrides))
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.hidden_size <= 0 or self.max_length <= 0 or self.num_layers <= 0:
            raise ValueError("hidden_size, max_length and num_layers must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def gather_at(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[b, index[b]] for x[B, N, ...]: index[B] gives [B, ...], index[B, k] gives [B, k, ...].

    The one way the models read chosen positions of a batch (the last real item, a window
    around it, a queried row)."""
    rows = torch.arange(x.size(0), device=x.device)
    if index.dim() == 2:
        rows = rows.unsqueeze(1)
    return x[rows, index]


def gather_last(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x[b, lengths[b]-1] for a right-padded batch x[B, L, ...]."""
    return gather_at(x, (lengths - 1).clamp(min=0))


def padding_mask(item_seq: torch.Tensor) -> torch.Tensor:
    """True at real items, False at padding (id 0); shape [B, L]."""
    return item_seq.ne(0)


class SequentialRecommender(nn.Module, abc.ABC):
    """A next-item model over right-padded sequences (id 0 = padding).

    forward(item_seq[B, L], lengths[B]) returns the representation after the last real item,
    [B, d]; scores against every item are `rep @ item_embeddings().T`.
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    # Set by each subclass: the item table [n_items + 1, d] that `item_embeddings` reads by default.
    item_embedding: nn.Embedding

    def __init__(
        self, config: ModelConfig, n_items: int, item_features: dict[str, tuple[np.ndarray, int]] | None = None
    ):
        super().__init__()
        self.config = config
        self.n_items = n_items

    @abc.abstractmethod
    def forward(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Representation [B, d] after the last real item of each sequence."""

    def item_embeddings(self) -> torch.Tensor:
        """[n_items + 1, d]; row 0 is padding and is never recommended."""
        return self.item_embedding.weight

    def scores(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Scores over all ids [B, n_items + 1]; padding (column 0) gets -inf."""
        logits = self(item_seq, lengths) @ self.item_embeddings().t()
        logits[:, 0] = float("-inf")
        return logits

    def loss(
        self, item_seq: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        """Cross-entropy of the next item over all items (the paper's loss)."""
        return item_cross_entropy(self(item_seq, lengths), self.item_embeddings(), targets, reduction)

    # -- one-pass training ---------------------------------------------------------------------
    # A causal model's state at position t of a sequence is its representation of the prefix
    # ending at t, so one pass over a user's history gives every training prefix at once instead
    # of one forward per prefix. A model offers it by overriding both methods below.

    def one_pass_support(self) -> str | None:
        """None when `prefix_outputs` is exact for this model and config; otherwise the reason.

        A model without it should say why in its own terms (see `no_one_pass`)."""
        return self.no_one_pass(
            "its representation of a history is not the output at that position "
            "of one pass over a longer sequence (later items would change it)"
        )

    def no_one_pass(self, why: str) -> str:
        """The refusal `one_pass_support` returns: the model's name, `why`, and what to do instead."""
        return f"{type(self).__name__} has no exact one-pass training: {why}; train per prefix (one_pass=false)"

    def prefix_outputs(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, N, d]: row t equals forward(item_seq[:, :t+1], t+1) for every real position t."""
        raise ValueError(self.one_pass_support())

    def require_one_pass(self) -> None:
        """Raise a ValueError naming the model, its config and the reason when one-pass is not exact."""
        reason = self.one_pass_support()
        if reason is not None:
            raise ValueError(f"one-pass training refused for {type(self).__name__} ({self.config}): {reason}")

    def sequence_loss(
        self, item_seq: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        """Cross-entropy at every target of one-pass rows: targets[B, N] holds the item that
        follows position t (0 where there is none). Equals `loss` on each prefix separately.

        Logits are computed at the target positions only: the output layer over all items is the
        dominant cost of a step, and padding positions would only waste it.
        """
        h = self.prefix_outputs(item_seq, lengths)
        at = targets.ne(0)
        return item_cross_entropy(h[at], self.item_embeddings(), targets[at], reduction)


# On CPU the [targets, n_items] logits are cut into row chunks of at most this many elements
# (16 MB): glibc serves larger blocks with fresh mmaps, so each step would page-fault its way
# through ~100 MB of logits, softmax and gradient (a third of a Beauty step's CPU time); chunks
# this size are reused from the heap. On CUDA one block is faster.
CPU_LOGIT_CHUNK = 1 << 22


def item_cross_entropy(
    rep: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy of targets[n] under scores rep[n, d] @ items[n_items + 1, d].T, computed in
    (at least) float32 with the padding column at -inf (it is never a candidate)."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be mean, sum or none; got {reduction!r}")
    n = rep.size(0)
    rows = n if rep.is_cuda else max(1, CPU_LOGIT_CHUNK // items.size(0))
    # the fused function forms the softmax gradient in place (glintru.models.loss)
    losses = torch.cat(
        [fused_item_cross_entropy(rep[i : i + rows], items, targets[i : i + rows]) for i in range(0, n, rows)]
    )
    if reduction == "none":
        return losses
    return losses.mean() if reduction == "mean" else losses.sum()


def normal_init(module: nn.Module, std: float = 0.02) -> None:
    """RecBole's init, which the transformer baselines, Mamba4Rec and SMLP4Rec share: N(0, std) for
    Linear and Embedding weights (the padding row then zero), zero biases, LayerNorm at (1, 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def xavier_init(module: nn.Module) -> None:
    """Xavier init as in the reference code: normal for embeddings, uniform for Linear/GRU."""
    for m in module.modules():
        if isinstance(m, nn.Embedding):
            nn.init.xavier_normal_(m.weight)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.GRU):
            for name, p in m.named_parameters():
                if "weight" in name:
                    nn.init.xavier_uniform_(p)
                elif "bias" in name:
                    nn.init.zeros_(p)
