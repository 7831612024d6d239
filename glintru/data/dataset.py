"""The prepared dataset: its on-disk format (a directory of Parquet files + meta.json) and the
in-memory view every later stage reads.

Directory layout (schema version 1)::

    DIR/sequences.parquet  user:int32, original_id:string, items:list<int32>   (row i is user i,
                           items in chronological order, ids 1..n_items; 0 is padding)
    DIR/items.parquet      item:int32 (0..n_items, row 0 is padding), original_id:string,
                           popularity:int64 (interactions in the prepared data),
                           feat_<name>:list<int32> per item side feature (token ids, 0 = none)
    DIR/meta.json          schema_version, name, source (format, files with sha256), params,
                           stats (users, items, interactions, avg_length, sparsity),
                           features ({name: vocabulary size incl. 0})
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 1
SEQUENCES_FILE = "sequences.parquet"
ITEMS_FILE = "items.parquet"
META_FILE = "meta.json"
MIN_SEQUENCE_LENGTH = 3  # leave-one-out needs one train, one validation and one test item


class DatasetError(ValueError):
    """A prepared dataset directory is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class PreparedDataset:
    """Prepared sequences held as Arrow tables; numpy views share their buffers (no copies)."""

    sequences: pa.Table
    items: pa.Table
    meta: dict[str, Any]
    path: Path | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.path.name if self.path else "dataset"))

    @property
    def n_users(self) -> int:
        return self.sequences.num_rows

    @property
    def n_items(self) -> int:
        """Number of real items; ids run 1..n_items and 0 is padding."""
        return self.items.num_rows - 1

    @property
    def n_interactions(self) -> int:
        return int(self.offsets[-1])

    def _list_array(self) -> pa.ListArray:
        if "list" not in self._cache:
            col = self.sequences.column("items")
            self._cache["list"] = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        return self._cache["list"]

    @property
    def values(self) -> np.ndarray:
        """All item ids of all users, concatenated (int32, a zero-copy view of the Arrow buffer)."""
        if "values" not in self._cache:
            arr = self._list_array()
            self._cache["values"] = arr.values.to_numpy(zero_copy_only=True)
        return self._cache["values"]

    @property
    def offsets(self) -> np.ndarray:
        """offsets[u]..offsets[u+1] delimit user u's items in `values` (int32 view)."""
        if "offsets" not in self._cache:
            arr = self._list_array()
            off = arr.offsets.to_numpy(zero_copy_only=True)
            if off[0] != 0:  # a sliced array: rebase so that values/offsets agree
                raise DatasetError("sequences column must not be a slice of a larger array")
            self._cache["offsets"] = off
        return self._cache["offsets"]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets).astype(np.int64)

    @property
    def popularity(self) -> np.ndarray:
        """Interaction count per item id (index 0, padding, is 0)."""
        return self.items.column("popularity").to_numpy()

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta.get("features", {}))

    def item_features(self) -> dict[str, tuple[np.ndarray, int]]:
        """Side features as dense padded token matrices: {name: (tokens[n_items+1, T], vocab)}."""
        out: dict[str, tuple[np.ndarray, int]] = {}
        for name, vocab in self.meta.get("features", {}).items():
            col = self.items.column(f"feat_{name}").combine_chunks()
            lists = col.to_pylist()
            width = max(1, max((len(x or []) for x in lists), default=1))
            mat = np.zeros((len(lists), width), dtype=np.int64)
            for i, toks in enumerate(lists):
                if toks:
                    mat[i, : len(toks)] = toks
            out[name] = (mat, int(vocab))
        return out

    def sequence(self, user: int) -> np.ndarray:
        return self.values[self.offsets[user] : self.offsets[user + 1]]


def compute_stats(lengths: np.ndarray, n_items: int) -> dict[str, float | int]:
    """The Table 1 statistics of a prepared dataset."""
    users = int(len(lengths))
    interactions = int(lengths.sum())
    return {
        "users": users,
        "items": int(n_items),
        "interactions": interactions,
        "avg_length": round(interactions / users, 4) if users else 0.0,
        "sparsity": round(1.0 - interactions / (users * n_items), 6) if users and n_items else 1.0,
    }


def build_tables(
    sequences: Sequence[np.ndarray],
    user_ids: Sequence[str],
    item_ids: Sequence[str],
    features: dict[str, tuple[list[list[int]], int]] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Arrow tables for remapped sequences (ids 1..n_items) and original id lists.

    `item_ids[i]` is the original id of item i+1. `features` maps a feature name to per-item token
    lists (index i for item i+1) and the vocabulary size (0 reserved for "no token").
    """
    n_items = len(item_ids)
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    offsets = np.zeros(len(sequences) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = (
        np.concatenate([np.asarray(s, dtype=np.int32) for s in sequences])
        if len(sequences)
        else np.zeros(0, dtype=np.int32)
    )
    if values.size and (values.min() < 1 or values.max() > n_items):
        raise DatasetError(f"item ids must lie in 1..{n_items}; got {values.min()}..{values.max()}")
    items_list = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, pa.int32()))
    seq_table = pa.table(
        {
            "user": pa.array(np.arange(len(sequences), dtype=np.int32)),
            "original_id": pa.array([str(u) for u in user_ids], pa.string()),
            "items": items_list,
        }
    )
    popularity = np.bincount(values, minlength=n_items + 1).astype(np.int64)
    popularity[0] = 0
    cols: dict[str, pa.Array] = {
        "item": pa.array(np.arange(n_items + 1, dtype=np.int32)),
        "original_id": pa.array(["[PAD]"] + [str(i) for i in item_ids], pa.string()),
        "popularity": pa.array(popularity),
    }
    for name, (tokens, _vocab) in (features or {}).items():
        if len(tokens) != n_items:
            raise DatasetError(f"feature {name!r} has {len(tokens)} rows for {n_items} items")
        cols[f"feat_{name}"] = pa.array([[]] + [list(t) for t in tokens], pa.list_(pa.int32()))
    return seq_table, pa.table(cols)


def write_prepared(
    out_dir: str | os.PathLike,
    sequences: Sequence[np.ndarray],
    user_ids: Sequence[str],
    item_ids: Sequence[str],
    *,
    name: str,
    source: dict[str, Any],
    params: dict[str, Any],
    features: dict[str, tuple[list[list[int]], int]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a prepared dataset atomically: into a temporary sibling, renamed when complete."""
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another --out or remove it first")
    short = [i for i, s in enumerate(sequences) if len(s) < MIN_SEQUENCE_LENGTH]
    if short:
        raise DatasetError(
            f"{len(short)} users have fewer than {MIN_SEQUENCE_LENGTH} interactions "
            f"(first: user {user_ids[short[0]]!r}); leave-one-out needs at least {MIN_SEQUENCE_LENGTH}"
        )
    seq_table, item_table = build_tables(sequences, user_ids, item_ids, features)
    lengths = np.diff(seq_table.column("items").chunk(0).offsets.to_numpy())
    meta = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "source": source,
        "params": params,
        "stats": compute_stats(lengths, len(item_ids)),
        "features": {k: int(v[1]) for k, v in (features or {}).items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        pq.write_table(seq_table, tmp / SEQUENCES_FILE)
        pq.write_table(item_table, tmp / ITEMS_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_dataset(path: str | os.PathLike) -> PreparedDataset:
    """Open a prepared dataset directory (memory-mapped Parquet reads)."""
    p = Path(path)
    if not p.is_dir():
        raise DatasetError(f"{p}: no such dataset directory (create one with `glintru prepare`)")
    missing = [f for f in (SEQUENCES_FILE, ITEMS_FILE, META_FILE) if not (p / f).exists()]
    if missing:
        raise DatasetError(f"{p}: not a prepared dataset, missing {', '.join(missing)}")
    try:
        meta = json.loads((p / META_FILE).read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(
            f"{p / META_FILE} line {e.lineno}: invalid JSON ({e.msg}); prepare the dataset again"
        ) from None
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(
            f"{p}: schema version {meta.get('schema_version')} is not {SCHEMA_VERSION}; prepare it again"
        )
    seqs = pq.read_table(p / SEQUENCES_FILE, memory_map=True)
    items = pq.read_table(p / ITEMS_FILE, memory_map=True)
    return from_tables(seqs, items, meta, path=p)


def from_tables(
    sequences: pa.Table, items: pa.Table, meta: dict[str, Any], path: Path | None = None
) -> PreparedDataset:
    """Wrap Arrow tables (e.g. fetched from Ray's object store) as a PreparedDataset."""
    if sequences.column("items").num_chunks != 1:
        sequences = sequences.combine_chunks()
    return PreparedDataset(sequences=sequences, items=items, meta=meta, path=path)
