"""A ninth model written the way CONTRIBUTING.md says: a config dataclass and a module. Tests register
it to show that one `ModelSpec` entry is all the platform needs: test_model_registry.py trains, evaluates
and tabulates it through the CLI, test_contract.py holds it to every check of the model contract."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from glintru.models.base import ModelConfig, SequentialRecommender, xavier_init


@dataclass
class MeanPoolConfig(ModelConfig):
    """The representation is a projection of the mean of the history's item embeddings."""

    num_layers: int = 1


class MeanPool(SequentialRecommender):
    config_class = MeanPoolConfig

    def __init__(self, config: MeanPoolConfig, n_items: int, item_features=None):
        super().__init__(config, n_items, item_features)
        self.item_embedding = nn.Embedding(n_items + 1, config.hidden_size, padding_idx=0)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        xavier_init(self)

    def forward(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # padding rows are zero (padding_idx), so the sum covers the real items only
        total = self.item_embedding(item_seq).sum(dim=1)
        return self.proj(total / lengths.clamp(min=1).unsqueeze(1).to(total.dtype))
