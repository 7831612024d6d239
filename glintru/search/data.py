"""A prepared dataset read once per experiment and shared through Ray's object store as Arrow.

The driver puts the Arrow tables in the object store; every training worker `ray.get`s them and
wraps them as a PreparedDataset whose numpy views point into the node's shared memory: one copy
per node, however many trials and workers read it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from glintru.data.dataset import PreparedDataset, from_tables, load_dataset


@dataclass(frozen=True)
class SharedDataset:
    """Handles to one prepared dataset in the object store (cheap to pickle into every trial)."""

    sequences: ray.ObjectRef
    items: ray.ObjectRef
    meta: dict[str, Any]
    path: str
    nbytes: int

    @property
    def name(self) -> str:
        return str(self.meta.get("name", Path(self.path).name))


def share_dataset(data: PreparedDataset | str | os.PathLike) -> SharedDataset:
    """Put a dataset's tables (or those read from a directory) in the object store (Ray must run)."""
    ds = data if isinstance(data, PreparedDataset) else load_dataset(data)
    # one chunk per column, so that workers never have to combine (copy) chunks
    sequences = ds.sequences.combine_chunks()
    items = ds.items.combine_chunks()
    return SharedDataset(
        sequences=ray.put(sequences),
        items=ray.put(items),
        meta=ds.meta,
        path=str(Path(ds.path).resolve()) if ds.path else "",
        nbytes=sequences.nbytes + items.nbytes,
    )


def fetch_dataset(shared: SharedDataset) -> PreparedDataset:
    """The shared dataset as a PreparedDataset; zero-copy on a node that holds the objects."""
    sequences, items = ray.get([shared.sequences, shared.items])
    return from_tables(sequences, items, shared.meta, path=Path(shared.path))


def in_shared_memory(ds: PreparedDataset) -> bool | None:
    """Whether the item-id buffer of `ds` lies in a shared-memory mapping of this process.

    True for a dataset fetched from the object store without a copy, False for one in private
    memory (e.g. read from Parquet); None where /proc is not available (not Linux).
    """
    if not sys.platform.startswith("linux"):
        return None
    address = ds.values.__array_interface__["data"][0]
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= address < hi:
                # a shared mapping ("s" in the permissions) of the object store's memory file
                return parts[1].endswith("s")
    return False
