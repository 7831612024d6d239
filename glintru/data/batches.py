"""Padded batches built straight from the Arrow buffers of a prepared dataset.

A training sample is a (user, position) pair: target s[t], input s[max(0, t-L):t]. Prefixes are
never materialised; each batch gathers its rows from the zero-copy `values`/`offsets` views and is
right-padded (real items first, 0 after) only to the longest input in that batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from glintru.data.dataset import PreparedDataset

SPLITS = ("valid", "test")


@dataclass
class Batch:
    users: torch.Tensor     # [B] int64
    item_seq: torch.Tensor  # [B, L] int64, right-padded with 0
    lengths: torch.Tensor   # [B] int64, number of real items (>= 1)
    targets: torch.Tensor   # [B] int64, the next item

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in
                       (self.users, self.item_seq, self.lengths, self.targets)))

    def __len__(self) -> int:
        return int(self.users.shape[0])


def train_samples(ds: PreparedDataset) -> tuple[np.ndarray, np.ndarray]:
    """All training (user, position) pairs: positions 1..n-3 of each user (0-based targets)."""
    lengths = ds.lengths
    per_user = np.maximum(lengths - 3, 0)
    users = np.repeat(np.arange(ds.n_users, dtype=np.int64), per_user)
    # position within each user's run: 1, 2, ..., n-3
    starts = np.cumsum(per_user) - per_user
    positions = np.arange(users.size, dtype=np.int64) - np.repeat(starts, per_user) + 1
    return users, positions


def split_positions(ds: PreparedDataset, split: str) -> np.ndarray:
    """Target position of every user for the validation (n-2) or test (n-1) split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return ds.lengths - (2 if split == "valid" else 1)


def gather(ds: PreparedDataset, users: np.ndarray, positions: np.ndarray, max_length: int) -> Batch:
    """Inputs s[max(0,t-L):t] and targets s[t] for each (user, t), right-padded to the batch max."""
    values, offsets = ds.values, ds.offsets
    users = np.asarray(users, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    base = offsets[users].astype(np.int64)
    lengths = np.minimum(positions, max_length)
    start = base + positions - lengths
    width = int(lengths.max()) if lengths.size else 1
    cols = np.arange(width, dtype=np.int64)
    idx = start[:, None] + cols[None, :]
    valid = cols[None, :] < lengths[:, None]
    seq = np.where(valid, values[np.where(valid, idx, 0)], 0).astype(np.int64)
    targets = values[base + positions].astype(np.int64)
    return Batch(
        users=torch.from_numpy(users),
        item_seq=torch.from_numpy(seq),
        lengths=torch.from_numpy(lengths),
        targets=torch.from_numpy(targets),
    )


def split_inputs(ds: PreparedDataset, split: str, max_length: int,
                 users: np.ndarray | None = None) -> Batch:
    """Validation or test inputs for the given users (all users by default)."""
    pos = split_positions(ds, split)
    u = np.arange(ds.n_users, dtype=np.int64) if users is None else np.asarray(users, dtype=np.int64)
    return gather(ds, u, pos[u], max_length)


class BatchLoader:
    """Iterates training batches for one rank; reshuffled each epoch from (seed, epoch).

    With world_size > 1 each rank takes an equal, disjoint share of the shuffled samples
    (the remainder is dropped so that every rank runs the same number of steps).
    """

    def __init__(self, ds: PreparedDataset, max_length: int, batch_size: int, *, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.ds = ds
        self.max_length = max_length
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.users, self.positions = train_samples(ds)
        if self.users.size == 0:
            raise ValueError(f"dataset {ds.name!r} has no training samples (every user has < 4 items)")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def num_samples(self) -> int:
        return self.users.size // self.world_size

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> np.ndarray:
        n = self.users.size
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(n)
                 if self.shuffle else np.arange(n))
        per_rank = n // self.world_size
        return order[self.rank * per_rank:(self.rank + 1) * per_rank]

    def __iter__(self) -> Iterator[Batch]:
        order = self._order()
        for i in range(len(self)):
            sel = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield gather(self.ds, self.users[sel], self.positions[sel], self.max_length)
