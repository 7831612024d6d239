"""Shared fixtures: small prepared datasets written in the real on-disk format."""

from __future__ import annotations

import numpy as np
import pytest

from glintru.data.dataset import write_prepared


def make_cyclic_dataset(path, n_users: int = 60, n_items: int = 30, length: int = 12, seed: int = 0):
    """Each user walks the cycle 1 -> 2 -> ... -> n_items -> 1 from a random start: the next item is
    fully predictable from the last one, while popularity is flat."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_users):
        start = rng.integers(0, n_items)
        seqs.append(((start + np.arange(length)) % n_items + 1).astype(np.int32))
    return write_prepared(
        path,
        seqs,
        [f"u{i}" for i in range(n_users)],
        [f"i{j}" for j in range(n_items)],
        name="cyclic",
        source={"format": "test"},
        params={},
    )


@pytest.fixture
def cyclic_dataset(tmp_path):
    from glintru.data.dataset import load_dataset

    return load_dataset(make_cyclic_dataset(tmp_path / "cyclic"))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests use tiny models, where thread hand-offs cost more than they save on 2 cores."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
