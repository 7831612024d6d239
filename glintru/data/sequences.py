"""One-pass training batches: each user's training history as one row with a target at every
position, so a causal model encodes the shared history once instead of once per prefix.

A user with n items has training targets s[t] for t = 1..n-3 (glintru.data.batches). Those with
t <= L (max_length) have the input s[0:t], a prefix of the row s[0:T], T = min(n-3, L), whose
position t-1 carries the target s[t]. Targets beyond L have a sliding window s[t-L:t] as input,
which is no prefix of anything shared: they stay ordinary per-prefix samples (`Batch`).
Batches hold about `batch_size` targets each, so an epoch takes about as many optimiser steps as
the per-prefix pipeline, and every target is seen exactly once per epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from glintru.data.batches import Batch, gather
from glintru.data.dataset import PreparedDataset

# Batches' worth of rows sorted by length together: large enough that rows of similar length meet
# (little padding), small enough that batch composition still changes from epoch to epoch.
CHUNK_BATCHES = 64


@dataclass
class SequenceBatch:
    """Right-padded rows s[0:T] with targets[r, i] = s[i+1] at every real position (0 after)."""

    users: torch.Tensor  # [R] int64
    item_seq: torch.Tensor  # [R, W] int64, right-padded with 0
    lengths: torch.Tensor  # [R] int64, T >= 1
    targets: torch.Tensor  # [R, W] int64, 0 where there is no target

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SequenceBatch:
        return SequenceBatch(
            *(t.to(device, non_blocking=non_blocking) for t in (self.users, self.item_seq, self.lengths, self.targets))
        )

    @property
    def num_targets(self) -> int:
        return int(self.lengths.sum())

    def __len__(self) -> int:
        return self.num_targets


@dataclass(frozen=True)
class PlannedBatch:
    """One step of an epoch before its tensors are gathered: whole rows of `users`, or (when
    `positions` is given) the per-prefix sliding-window samples (users[i], positions[i])."""

    users: np.ndarray
    positions: np.ndarray | None = None
    num_targets: int = 0

    def targets(self, row_lengths: np.ndarray) -> list[tuple[int, int]]:
        """The (user, target position) pairs this step trains on."""
        if self.positions is not None:
            return list(zip(self.users.tolist(), self.positions.tolist()))
        return [(u, t) for u in self.users.tolist() for t in range(1, int(row_lengths[u]) + 1)]


def gather_rows(ds: PreparedDataset, users: np.ndarray, row_lengths: np.ndarray) -> SequenceBatch:
    """Rows s[0:T] of `users` (T = row_lengths[user]) and their targets s[1:T+1]."""
    users = np.asarray(users, dtype=np.int64)
    lengths = row_lengths[users]
    base = ds.offsets[users].astype(np.int64)
    width = int(lengths.max())
    cols = np.arange(width, dtype=np.int64)
    real = cols[None, :] < lengths[:, None]
    idx = np.where(real, base[:, None] + cols[None, :], 0)
    seq = np.where(real, ds.values[idx], 0).astype(np.int64)
    targets = np.where(real, ds.values[idx + 1], 0).astype(np.int64)  # idx + 1 <= base + T: in range
    return SequenceBatch(
        users=torch.from_numpy(users),
        item_seq=torch.from_numpy(seq),
        lengths=torch.from_numpy(lengths),
        targets=torch.from_numpy(targets),
    )


class SequenceLoader:
    """Iterates one-pass training batches for one rank; reshuffled each epoch from (seed, epoch).

    Each epoch: users are shuffled, rows sorted by length within chunks of CHUNK_BATCHES batches
    and cut into batches of at most `batch_size` targets (a longer row goes alone); the window
    samples are shuffled and cut into batches of `batch_size`; then the order of all batches is
    shuffled. Every rank plans the same global list and takes every world_size-th batch; the
    count is first made a multiple of world_size by halving the largest batches, so every rank
    runs the same number of steps and every target is still seen exactly once.
    """

    def __init__(
        self,
        ds: PreparedDataset,
        max_length: int,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        chunk_batches: int = CHUNK_BATCHES,
    ):
        if batch_size <= 0 or max_length <= 0 or chunk_batches <= 0:
            raise ValueError("batch_size, max_length and chunk_batches must be positive")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.ds = ds
        self.max_length = max_length
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.chunk_batches = chunk_batches
        self.epoch = 0
        n_targets = np.maximum(ds.lengths - 3, 0)
        self.row_lengths = np.minimum(n_targets, max_length)  # T per user (0: no training row)
        self.row_users = np.flatnonzero(self.row_lengths > 0)
        extra = n_targets - self.row_lengths  # targets t = L+1 .. n-3
        self.window_users = np.repeat(np.arange(ds.n_users, dtype=np.int64), extra)
        starts = np.cumsum(extra) - extra
        self.window_positions = (
            np.arange(self.window_users.size, dtype=np.int64) - np.repeat(starts, extra) + max_length + 1
        )
        self.total_targets = int(n_targets.sum())
        if self.total_targets == 0:
            raise ValueError(f"dataset {ds.name!r} has no training samples (every user has < 4 items)")
        if self.row_users.size + self.window_users.size < world_size:
            raise ValueError(f"{self.total_targets} training targets cannot give each of {world_size} ranks a batch")
        self._plan: tuple[int, list[PlannedBatch]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def plan(self) -> list[PlannedBatch]:
        """This rank's batches for the current epoch (deterministic by seed and epoch)."""
        if self._plan is None or self._plan[0] != self.epoch:
            self._plan = (self.epoch, self._global_plan()[self.rank :: self.world_size])
        return self._plan[1]

    def _global_plan(self) -> list[PlannedBatch]:
        rng = np.random.default_rng([self.seed, self.epoch])
        users = self.row_users[rng.permutation(self.row_users.size)]
        sizes = self.row_lengths[users]
        batches: list[PlannedBatch] = []
        # Chunks of about chunk_batches * batch_size targets, each sorted by row length.
        chunk_of = np.cumsum(sizes) // (self.chunk_batches * self.batch_size)
        for c in np.unique(chunk_of):
            sel = chunk_of == c
            order = np.argsort(sizes[sel], kind="stable")
            batches += self._cut_rows(users[sel][order], sizes[sel][order])
        w = rng.permutation(self.window_users.size)
        for i in range(0, w.size, self.batch_size):
            sel = w[i : i + self.batch_size]
            batches.append(PlannedBatch(self.window_users[sel], self.window_positions[sel], sel.size))
        batches = [batches[i] for i in rng.permutation(len(batches))]
        return _split_to_multiple(batches, self.world_size, self.row_lengths)

    def _cut_rows(self, users: np.ndarray, sizes: np.ndarray) -> list[PlannedBatch]:
        """Consecutive rows into batches of at most batch_size targets (a longer row alone)."""
        out, start, count = [], 0, 0
        for i, n in enumerate(sizes.tolist()):
            if count and count + n > self.batch_size:
                out.append(PlannedBatch(users[start:i], None, count))
                start, count = i, 0
            count += n
        if count:
            out.append(PlannedBatch(users[start:], None, count))
        return out

    def __len__(self) -> int:
        return len(self.plan())

    @property
    def num_targets(self) -> int:
        """Targets this rank trains on in the current epoch."""
        return sum(b.num_targets for b in self.plan())

    def __iter__(self) -> Iterator[SequenceBatch | Batch]:
        for b in self.plan():
            if b.positions is None:
                yield gather_rows(self.ds, b.users, self.row_lengths)
            else:
                yield gather(self.ds, b.users, b.positions, self.max_length)


def _split_to_multiple(batches: list[PlannedBatch], world_size: int, row_lengths: np.ndarray) -> list[PlannedBatch]:
    """Halve the largest splittable batch (in place in the order) until the count divides
    world_size; if none can be split any more, the last batches are dropped."""
    batches = list(batches)
    while len(batches) % world_size:
        splittable = [i for i, b in enumerate(batches) if b.users.size > 1]
        if not splittable:
            return batches[: len(batches) - len(batches) % world_size]
        i = max(splittable, key=lambda j: batches[j].num_targets)  # the first largest: deterministic
        b, half = batches[i], batches[i].users.size // 2
        parts = []
        for sl in (slice(0, half), slice(half, None)):
            users = b.users[sl]
            if b.positions is None:
                parts.append(PlannedBatch(users, None, int(row_lengths[users].sum())))
            else:
                parts.append(PlannedBatch(users, b.positions[sl], users.size))
        batches[i : i + 1] = parts
    return batches
