"""SMLP4Rec (Gao et al., TOIS 2024): an all-MLP recommender that mixes the item-and-feature
tensor [features, positions, channels] along all three axes in parallel."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from glintru.models.base import ModelConfig, SequentialRecommender, gather_last, normal_init

MISSING_FEATURES_WARNING = (
    "SMLP4Rec: the dataset has no item side features, so it runs on item ids only (the feature "
    "axis holds the id alone), which is not the published feature-rich model. Missing: the item "
    "features SMLP4Rec's public code mixes, genre and title ('class' and 'movie_title' there; "
    "'genre' and 'title' from MovieLens movies.dat/u.item), or 'category' and 'brand' from Amazon "
    "metadata. Prepare the dataset with its item file (glintru prepare --items FILE), or set "
    "use_features=False to run on ids deliberately."
)


@dataclass
class SMLP4RecConfig(ModelConfig):
    """expansion_factor: inner width of every mixing MLP relative to its axis (1, as the paper's
    Appendix B sets it). use_features: embed the dataset's item side features as extra slots of
    the feature axis. With use_features=True and no features in the data the model warns (see
    SMLP4Rec) and the axis holds the id alone; use_features=False runs on ids alone, silently."""

    expansion_factor: int = 1
    use_features: bool = True

    def validate(self) -> None:
        super().validate()
        if self.expansion_factor <= 0:
            raise ValueError(f"expansion_factor must be positive; got {self.expansion_factor}")


class MixingMLP(nn.Module):
    """Linear(n -> e*n) -> GELU -> Dropout -> Linear(e*n -> n) -> Dropout along one axis.

    Bias-free as in the public SMLP4Rec code; for the sequence axis this also means a zeroed
    (padding) position contributes exactly nothing.

    zero_tail: the axis may arrive shorter than n, holding its first m positions of which the
    missing n - m are zeros. The first m input columns of fc1 and output rows of fc2 then give
    exactly the first m outputs of the full mix (the zeros add nothing to any hidden unit), at
    m/n of its cost. Only the sequence axis, whose padding is zeroed, is built with it.
    """

    def __init__(self, n: int, expansion: int, dropout: float, zero_tail: bool = False):
        super().__init__()
        self.zero_tail = zero_tail
        self.fc1 = nn.Linear(n, expansion * n, bias=False)
        self.fc2 = nn.Linear(expansion * n, n, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        dim = dim % x.dim()
        if dim == x.dim() - 1:
            return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(x)))))
        m, n = x.size(dim), self.fc1.in_features
        if m != n and not (self.zero_tail and m < n):
            raise ValueError(f"mixing axis of size {m}; this mixer takes {n}")
        # An inner axis: multiply by the weights from the left over [..., n, rest] rather than
        # transposing the axis last and back (half the time for the feature axis).
        y = x.reshape(*x.shape[: dim + 1], -1)
        y = self.dropout(F.gelu(torch.matmul(self.fc1.weight[:, :m], y)))
        y = self.dropout(torch.matmul(self.fc2.weight[:m], y))
        return y.view(x.shape)


class SMLPLayer(nn.Module):
    """One parallel tri-directional mixing layer over x[batch, F, L, d].

    One shared LayerNorm (over channels) feeds three MLPs at once, along the sequence (L),
    channel (d) and feature (F) axes; their sum is added back to the input. The parallel form
    with a single normalisation is what SMLP4Rec changes relative to MLP4Rec's cascade.
    """

    def __init__(self, n_slots: int, max_length: int, d: int, expansion: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.sequence = MixingMLP(max_length, expansion, dropout, zero_tail=True)
        self.channel = MixingMLP(d, expansion, dropout)
        self.feature = MixingMLP(n_slots, expansion, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """mask[batch, 1, L, 1] is 1 at real items: padding is zeroed before the sequence mix,
        so whatever the other mixers left at padding positions never reaches a real one."""
        xn = self.norm(x)
        return x + self.sequence(xn * mask, dim=2) + self.channel(xn, dim=3) + self.feature(xn, dim=1)


class FeatureEmbedding(nn.Module):
    """Per-item embedding of one side feature: the mean over the item's tokens (0 = no token)."""

    tokens: torch.Tensor  # buffer [n_items + 1, T]

    def __init__(self, tokens: np.ndarray, vocab_size: int, d: int):
        super().__init__()
        ids = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
        if ids.dim() != 2:
            raise ValueError(f"feature tokens must be a [n_items + 1, T] matrix; got shape {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
            raise ValueError(f"feature tokens must lie in 0..{vocab_size - 1}; got {ids.min()}..{ids.max()}")
        # Data, not state: the dataset supplies it again whenever the model is built.
        self.register_buffer("tokens", ids, persistent=False)
        self.embedding = nn.Embedding(vocab_size, d, padding_idx=0)

    def table(self) -> torch.Tensor:
        """[n_items + 1, d]: pooled once per forward over all items, then indexed by the batch,
        which is far cheaper than pooling every position of every sequence."""
        counts = self.tokens.ne(0).sum(1, keepdim=True).clamp(min=1)
        return self.embedding(self.tokens).sum(1) / counts


class SMLP4Rec(SequentialRecommender):
    """Items and their side features form x[batch, F, L, d] (slot 0: the item id embedding,
    then one mean-pooled embedding per feature); `num_layers` parallel mixing layers follow; the
    representation is the id slot at the last real position after a LayerNorm, scored against
    the id embeddings.

    Choices where the paper and its public code leave room:
    - Fixed length. The sequence mixer's weights are tied to absolute positions
      0..max_length-1, so the input is re-laid out left-aligned (the last max_length real items
      from position 0, zeros after) and padding is zeroed before every sequence mix: item k of a
      history always sits at position k, and the result is independent of how much padding the
      batch carried. The layout is max_length wide in the model's definition; it is computed
      only as wide as the batch (min(max_length, batch width)), since the positions beyond hold
      zeros that change no real position (see MixingMLP's zero_tail), so a length-bucketed
      batch of short histories costs its own width, not max_length. With dropout on, a narrower
      layout draws its masks over fewer positions (the same distribution, another random
      stream). The mixer is bidirectional within the history, which only ever holds items
      before the target.
    - Residual. The public code replaces x by the sum of the three mixers; we add the sum to x
      (as MLP-Mixer and MLP4Rec do), which keeps stacked layers trainable.
    - Layers. The public code applies one layer's weights num_layers times; each layer here has
      its own weights (Table 5's 2 layers).
    - Features are pooled once per item (mean over its tokens, token 0 ignored), the RecBole
      "mean" pooling the public code configures.
    - Missing features. SMLP4Rec is a feature-rich model: its public code (RecBole's
      SMLPRECML.yaml) selects the item features 'class' and 'movie_title', i.e. genre and title,
      which this platform's readers call 'genre' and 'title' (MovieLens movies.dat / u.item); the
      Amazon metadata readers give 'category' and 'brand'. Built with use_features=True on a dataset
      without item features, the model warns (UserWarning, naming those features and how to add
      them) instead of silently becoming an id-only model that would not be the paper's baseline.
    """

    config_class = SMLP4RecConfig

    def __init__(
        self, config: SMLP4RecConfig, n_items: int, item_features: dict[str, tuple[np.ndarray, int]] | None = None
    ):
        super().__init__(config, n_items, item_features)
        d = config.hidden_size
        self.item_embedding = nn.Embedding(n_items + 1, d, padding_idx=0)
        features = item_features if config.use_features and item_features else {}
        if config.use_features and not features:
            warnings.warn(MISSING_FEATURES_WARNING, UserWarning, stacklevel=2)
        for name, (tokens, _vocab) in features.items():
            if np.asarray(tokens).shape[0] != n_items + 1:
                raise ValueError(
                    f"feature {name!r} has {np.asarray(tokens).shape[0]} rows; expected "
                    f"n_items + 1 = {n_items + 1} (row 0 is padding)"
                )
        self.features = nn.ModuleDict(
            {name: FeatureEmbedding(tokens, vocab, d) for name, (tokens, vocab) in sorted(features.items())}
        )
        n_slots = 1 + len(self.features)
        self.layers = nn.ModuleList(
            SMLPLayer(n_slots, config.max_length, d, config.expansion_factor, config.dropout)
            for _ in range(config.num_layers)
        )
        self.norm = nn.LayerNorm(d, eps=1e-12)
        normal_init(self)  # the public SMLP4Rec code's init (its Linear layers have no bias)

    def _left_aligned(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, W] holding each row's last max_length real items from position 0, zeros after;
        W = min(max_length, batch width), the first W columns of the max_length-wide layout."""
        M = self.config.max_length
        W = min(M, item_seq.size(1))
        lengths = lengths.clamp(min=1)
        start = (lengths - M).clamp(min=0)
        idx = start.unsqueeze(1) + torch.arange(W, device=item_seq.device)
        seq = item_seq.gather(1, idx.clamp(max=item_seq.size(1) - 1))
        seq = seq.masked_fill(idx >= lengths.unsqueeze(1), 0)
        return seq, lengths.clamp(max=M)

    def one_pass_support(self) -> str | None:
        return self.no_one_pass(
            "its sequence-mixing MLP combines all max_length positions of the history, so each "
            "position's state depends on the items after it"
        )

    def forward(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        seq, lengths = self._left_aligned(item_seq, lengths)
        slots = [self.item_embedding(seq)]
        slots += [F.embedding(seq, cast(FeatureEmbedding, feat).table()) for feat in self.features.values()]
        x = torch.stack(slots, 1)  # [B, F, L, d]; slot 0 is the item id
        mask = (torch.arange(seq.size(1), device=seq.device) < lengths.unsqueeze(1)).to(x.dtype)
        mask = mask[:, None, :, None]
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(gather_last(x[:, 0], lengths))
