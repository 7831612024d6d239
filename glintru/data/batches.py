"""Padded batches built straight from the Arrow buffers of a prepared dataset.

A training sample is a (user, position) pair: target s[t], input s[max(0, t-L):t]. Prefixes are
never materialised; each batch gathers its rows from the zero-copy `values`/`offsets` views and is
right-padded (real items first, 0 after) only to the longest input in that batch.

Training batches are length-bucketed by default: random batches of 2,048 almost always hold one long
prefix and are padded to it, while most prefixes are short (real Beauty: mean 9, median 4 at L=100),
so grouping similar lengths removes most of the padded work without changing which samples an epoch
sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from glintru.data.dataset import PreparedDataset

SPLITS = ("valid", "test")


@dataclass
class Batch:
    users: torch.Tensor  # [B] int64
    item_seq: torch.Tensor  # [B, L] int64, right-padded with 0
    lengths: torch.Tensor  # [B] int64, number of real items (>= 1)
    targets: torch.Tensor  # [B] int64, the next item

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            *(t.to(device, non_blocking=non_blocking) for t in (self.users, self.item_seq, self.lengths, self.targets))
        )

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


def gather(
    ds: PreparedDataset, users: np.ndarray, positions: np.ndarray, max_length: int, pad_to: int | None = None
) -> Batch:
    """Inputs s[max(0,t-L):t] and targets s[t] for each (user, t), right-padded to the batch max
    (or to the fixed width `pad_to`, which must hold every input)."""
    values, offsets = ds.values, ds.offsets
    users = np.asarray(users, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    base = offsets[users].astype(np.int64)
    lengths = np.minimum(positions, max_length)
    start = base + positions - lengths
    width = int(lengths.max()) if lengths.size else 1
    if pad_to is not None:
        if pad_to < width:
            raise ValueError(f"pad_to={pad_to} is shorter than an input of length {width}")
        width = pad_to
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


def split_inputs(ds: PreparedDataset, split: str, max_length: int, users: np.ndarray | None = None) -> Batch:
    """Validation or test inputs for the given users (all users by default)."""
    pos = split_positions(ds, split)
    u = np.arange(ds.n_users, dtype=np.int64) if users is None else np.asarray(users, dtype=np.int64)
    return gather(ds, u, pos[u], max_length)


# Batches' worth of samples sorted together. Large enough that each chunk holds many prefixes of
# every common length (so batches come out nearly uniform in width), small enough that the
# composition of an epoch's batches still changes from epoch to epoch.
CHUNK_BATCHES = 64


def batch_sizes(n: int, batch_size: int, world_size: int = 1, drop_last: bool = False) -> list[int]:
    """Sizes of the consecutive batches a bucketed epoch of n samples is cut into.

    Full batches first, then the remainder. With several ranks the count must be a multiple of
    world_size so that every rank takes whole batches and runs the same number of steps: without
    drop_last the largest batches are halved until it is (every sample still seen once); with
    drop_last whole batches are dropped instead.
    """
    if drop_last:
        full = n // batch_size
        return [batch_size] * (full - full % world_size)
    sizes = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    i = 0
    while len(sizes) % world_size:
        i = max(range(len(sizes)), key=lambda j: sizes[j])  # the first largest: deterministic
        half = sizes[i] // 2
        sizes[i : i + 1] = [sizes[i] - half, half]  # consecutive halves keep the sorted order
    return sizes


class BatchLoader:
    """Iterates training batches for one rank; reshuffled each epoch from (seed, epoch).

    bucketing=True (the default): the epoch's shuffled samples are sorted by prefix length within
    chunks of CHUNK_BATCHES batches, cut into batches, and the batches are shuffled; every rank draws
    the same global batch list and takes every world_size-th batch. bucketing=False: plain random
    batches, each rank an equal contiguous share of the shuffled samples (the remainder dropped).
    `pad_to` pads every batch to that fixed width (a fixed-length pipeline, for benchmarks).
    """

    def __init__(
        self,
        ds: PreparedDataset,
        max_length: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        bucketing: bool = True,
        pad_to: int | None = None,
        chunk_batches: int = CHUNK_BATCHES,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if chunk_batches <= 0:
            raise ValueError(f"chunk_batches must be positive, got {chunk_batches}")
        self.ds = ds
        self.max_length = max_length
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.bucketing = bucketing
        self.chunk_batches = chunk_batches
        self.epoch = 0
        self.users, self.positions = train_samples(ds)
        if self.users.size == 0:
            raise ValueError(f"dataset {ds.name!r} has no training samples (every user has < 4 items)")
        self.prefix_lengths = np.minimum(self.positions, max_length)
        longest = int(self.prefix_lengths.max())
        if pad_to is not None and pad_to < longest:
            raise ValueError(f"pad_to={pad_to} is shorter than the longest training input ({longest})")
        self.pad_to = pad_to
        if bucketing:
            if not drop_last and self.users.size < world_size:
                raise ValueError(f"{self.users.size} training samples cannot give each of {world_size} ranks a batch")
            self._sizes = batch_sizes(self.users.size, batch_size, world_size, drop_last)
            self._bounds = np.concatenate([[0], np.cumsum(self._sizes, dtype=np.int64)])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (bucketed ranks may differ by the sizes of split batches)."""
        if self.bucketing:
            return int(sum(self._sizes[i] for i in self._rank_batches(np.arange(len(self._sizes)))))
        return self.users.size // self.world_size

    def __len__(self) -> int:
        if self.bucketing:
            return len(self._sizes) // self.world_size
        n = self.users.size // self.world_size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _rank_batches(self, batch_order: np.ndarray) -> np.ndarray:
        return batch_order[self.rank :: self.world_size]

    def batch_indices(self) -> list[np.ndarray]:
        """This rank's batches for the current epoch, as indices into (self.users, self.positions)."""
        n = self.users.size
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if not self.bucketing:
            per_rank = n // self.world_size
            mine = order[self.rank * per_rank : (self.rank + 1) * per_rank]
            return [mine[i * self.batch_size : (i + 1) * self.batch_size] for i in range(len(self))]
        order = order[: self._bounds[-1]]  # drop_last: a random remainder sits out this epoch
        # one stable sort by (chunk, length): ties keep their shuffled order, so equal-length
        # prefixes are still mixed at random across the batches of a chunk
        chunk = np.arange(order.size, dtype=np.int64) // (self.chunk_batches * self.batch_size)
        key = chunk * (self.max_length + 1) + self.prefix_lengths[order]
        order = order[np.argsort(key, kind="stable")]
        n_batches = len(self._sizes)
        batch_order = rng.permutation(n_batches) if self.shuffle else np.arange(n_batches)
        return [order[self._bounds[b] : self._bounds[b + 1]] for b in self._rank_batches(batch_order)]

    def padded_widths(self) -> np.ndarray:
        """The width each of this epoch's batches is padded to (this rank), without building them."""
        if self.pad_to is not None:
            return np.full(len(self), self.pad_to, dtype=np.int64)
        return np.array([self.prefix_lengths[sel].max() for sel in self.batch_indices()], dtype=np.int64)

    def mean_padded_width(self) -> float:
        """Mean padded width per batch over this epoch: the cost driver of a step for a given batch size."""
        return float(self.padded_widths().mean())

    def mean_prefix_length(self) -> float:
        """Mean real input length of a training sample: the width a perfectly packed batch would have."""
        return float(self.prefix_lengths.mean())

    def __iter__(self) -> Iterator[Batch]:
        for sel in self.batch_indices():
            yield gather(self.ds, self.users[sel], self.positions[sel], self.max_length, self.pad_to)
