"""Batches from Arrow buffers: split positions, truncation, dynamic padding, sharding, zero copy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glintru.data.batches import BatchLoader, gather, split_inputs, train_samples
from glintru.data.dataset import load_dataset, write_prepared


@pytest.fixture
def ds(tmp_path):
    seqs = [np.array([1, 2, 3, 4, 5], np.int32), np.array([6, 7, 8], np.int32),
            np.array([2, 4, 6, 8, 1, 3, 5], np.int32)]
    path = write_prepared(tmp_path / "d", seqs, ["a", "b", "c"], [str(i) for i in range(1, 9)],
                          name="toy", source={}, params={})
    return load_dataset(path)


def test_values_and_offsets_are_zero_copy_views_of_arrow(ds):
    col = ds.sequences.column("items").chunk(0)
    assert ds.values.ctypes.data == col.values.buffers()[1].address
    assert ds.offsets.tolist() == [0, 5, 8, 15]
    assert not ds.values.flags.owndata


def test_train_samples_cover_positions_1_to_n_minus_3(ds):
    users, positions = train_samples(ds)
    pairs = sorted(zip(users.tolist(), positions.tolist()))
    # user 0 (n=5): t=1,2; user 1 (n=3): none; user 2 (n=7): t=1..4
    assert pairs == [(0, 1), (0, 2), (2, 1), (2, 2), (2, 3), (2, 4)]


def test_split_inputs_leave_one_out(ds):
    valid = split_inputs(ds, "valid", max_length=10)
    test = split_inputs(ds, "test", max_length=10)
    assert valid.targets.tolist() == [4, 7, 3]
    assert test.targets.tolist() == [5, 8, 5]
    assert valid.lengths.tolist() == [3, 1, 5]
    assert test.item_seq[2].tolist() == [2, 4, 6, 8, 1, 3]
    assert test.item_seq[1].tolist() == [6, 7, 0, 0, 0, 0]  # right padding to the batch max


def test_truncation_keeps_most_recent_items_and_pads_to_batch_max(ds):
    b = gather(ds, np.array([2, 0]), np.array([6, 2]), max_length=3)
    assert b.item_seq.tolist() == [[8, 1, 3], [1, 2, 0]]
    assert b.lengths.tolist() == [3, 2]
    assert b.targets.tolist() == [5, 3]
    assert b.item_seq.dtype == torch.int64


def test_unknown_split_is_rejected(ds):
    with pytest.raises(ValueError, match="split must be one of"):
        split_inputs(ds, "train", 5)


def test_loader_shards_are_disjoint_and_deterministic(ds):
    seen = []
    for rank in range(2):
        loader = BatchLoader(ds, 10, batch_size=2, seed=3, rank=rank, world_size=2)
        loader.set_epoch(1)
        seen.append([(u, t) for b in loader for u, t in zip(b.users.tolist(), b.targets.tolist())])
    assert len(seen[0]) == len(seen[1]) == 3
    assert not set(seen[0]) & set(seen[1])
    again = BatchLoader(ds, 10, batch_size=2, seed=3, rank=0, world_size=2)
    again.set_epoch(1)
    assert [(u, t) for b in again for u, t in zip(b.users.tolist(), b.targets.tolist())] == seen[0]
    again.set_epoch(2)
    order2 = [(u, t) for b in again for u, t in zip(b.users.tolist(), b.targets.tolist())]
    assert len(order2) == 3


def test_loader_rejects_bad_arguments(ds):
    with pytest.raises(ValueError, match="batch_size must be positive"):
        BatchLoader(ds, 10, batch_size=0)
    with pytest.raises(ValueError, match="outside world size"):
        BatchLoader(ds, 10, batch_size=2, rank=2, world_size=2)
