"""Most-popular ranking in the model contract: the floor every sequential model must clear."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class PopConfig:
    """The one setting evaluation reads from a model: how many recent items it takes as input."""

    max_length: int = 50


class PopularityRanker(nn.Module):
    """Scores item i by log(1 + count_i) for every user, whatever the history.

    It has a one-dimensional representation (constant 1) and one-dimensional item embeddings
    (log counts), so full and sampled evaluation treat it exactly like a trained model.
    """

    log_counts: torch.Tensor  # buffer [n_items + 1, 1]

    def __init__(self, popularity: np.ndarray, max_length: int = 50):
        super().__init__()
        self.config = PopConfig(max_length)
        counts = torch.tensor(np.array(popularity, dtype=np.float32))
        self.register_buffer("log_counts", torch.log1p(counts).unsqueeze(1))

    def forward(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.ones(item_seq.size(0), 1, device=item_seq.device)

    def item_embeddings(self) -> torch.Tensor:
        return self.log_counts

    def scores(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        s = self(item_seq, lengths) @ self.item_embeddings().t()
        s[:, 0] = float("-inf")
        return s
