"""GRU4Rec (Hidasi et al., ICLR 2016) in its RecBole form: embedding, dropout, GRU, projection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from glintru.models.base import ModelConfig, SequentialRecommender, gather_last, xavier_init


@dataclass
class GRU4RecConfig(ModelConfig):
    """hidden_size is both the item embedding and the GRU state size.

    num_layers defaults to 1 as in RecBole's GRU4Rec; the dataset presets use 2, the paper's
    Table 5 setting for every baseline.
    """

    num_layers: int = 1

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "ml-1m": {"num_layers": 2},
        "beauty": {"num_layers": 2},
        "video-games": {"num_layers": 2},
    }


class GRU4Rec(SequentialRecommender):
    """The GRU runs over the right-padded batch as is: being causal, its state at a real position
    never sees the padding that follows, so no packing is needed for exact results."""

    config_class = GRU4RecConfig

    def __init__(
        self, config: GRU4RecConfig, n_items: int, item_features: dict[str, tuple[np.ndarray, int]] | None = None
    ):
        super().__init__(config, n_items, item_features)
        d = config.hidden_size
        self.item_embedding = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.emb_dropout = nn.Dropout(config.dropout)
        # Bias-free as in RecBole's GRU4Rec.
        self.gru = nn.GRU(d, d, num_layers=config.num_layers, bias=False, batch_first=True)
        self.dense = nn.Linear(d, d)
        xavier_init(self)

    def forward(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.emb_dropout(self.item_embedding(item_seq))
        out, _ = self.gru(x)
        return self.dense(gather_last(out, lengths))  # position-wise, so project the last state only

    def one_pass_support(self) -> str | None:
        return None  # a GRU is causal: its state at t is the prefix's state

    def prefix_outputs(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.emb_dropout(self.item_embedding(item_seq)))
        return self.dense(out)
