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
                           features ({name: vocabulary size incl. 0}),
                           fingerprint (SHA-256 of the tables' contents, glintru.data.fingerprint)
    DIR/.glintru.json      the marker that says it is a prepared dataset (glintru.outputs)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from glintru.data.fingerprint import FINGERPRINT_KEY, table_fingerprint
from glintru.outputs import DATASET, check_output, locked, mark, replace_dir

SCHEMA_VERSION = 1
SEQUENCES_FILE = "sequences.parquet"
ITEMS_FILE = "items.parquet"
META_FILE = "meta.json"
MIN_SEQUENCE_LENGTH = 3  # leave-one-out needs one train, one validation and one test item


# the columns load_dataset requires, with their types (items.parquet adds feat_<name> per feature)
SEQUENCE_COLUMNS = {"user": pa.int32(), "original_id": pa.string(), "items": pa.list_(pa.int32())}
ITEM_COLUMNS = {"item": pa.int32(), "original_id": pa.string(), "popularity": pa.int64()}
CHANGED = "the dataset was changed or damaged since it was prepared; prepare it again"


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
    def stats(self) -> dict[str, float | int]:
        """The Table 1 statistics of what the tables hold (meta.json keeps those of the preparation)."""
        return compute_stats(self.lengths, self.n_items)

    @property
    def fingerprint(self) -> str:
        """The content hash of the tables (glintru.data.fingerprint): meta.json's, else hashed once."""
        if FINGERPRINT_KEY not in self._cache:
            recorded = self.meta.get(FINGERPRINT_KEY)
            self._cache[FINGERPRINT_KEY] = recorded or table_fingerprint(self.sequences, self.items)
        return self._cache[FINGERPRINT_KEY]

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
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
) -> Path:
    """Write a prepared dataset atomically: into a temporary sibling, renamed when complete, under
    the output's lock. `overwrite` replaces only a prepared dataset, never one of `inputs` ({flag: path},
    the files it was made from) or a folder holding them (glintru.outputs)."""
    check_prepared_out(out_dir, overwrite, inputs)
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
        FINGERPRINT_KEY: table_fingerprint(seq_table, item_table),
    }
    with locked(out_dir):
        real = check_prepared_out(out_dir, overwrite, inputs)  # again: another command may have written it
        tmp = Path(tempfile.mkdtemp(prefix=f".{real.name}.tmp-", dir=real.parent))
        try:
            pq.write_table(seq_table, tmp / SEQUENCES_FILE, write_page_checksum=True)
            pq.write_table(item_table, tmp / ITEMS_FILE, write_page_checksum=True)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
            mark(tmp, DATASET)
            replace_dir(tmp, real)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return Path(out_dir)


def check_prepared_out(
    out_dir: str | os.PathLike, overwrite: bool, inputs: Mapping[str, str | os.PathLike | None] | None = None
) -> Path:
    """The resolved output directory of a prepared dataset, once it may be written: new, empty, or
    (with `overwrite`) a prepared dataset that is none of `inputs` nor holds one of them."""
    out = check_output(out_dir, DATASET, inputs=inputs or {}, replace=overwrite)
    if out.exists() and os.listdir(out) and not overwrite:
        raise FileExistsError(
            f"{out_dir} already exists; choose another --out or pass --overwrite to replace the dataset there"
        )
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
    except UnicodeDecodeError as e:
        raise DatasetError(f"{p / META_FILE}: not UTF-8 text (byte {e.start}); {CHANGED}") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{p / META_FILE}: expected a JSON object, got {type(meta).__name__}; {CHANGED}")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(
            f"{p}: schema version {meta.get('schema_version')} is not {SCHEMA_VERSION}; prepare it again"
        )
    ds = from_tables(_read_table(p / SEQUENCES_FILE), _read_table(p / ITEMS_FILE), meta, path=p)
    check_dataset(ds, p)
    if FINGERPRINT_KEY not in meta:  # prepared before fingerprints were recorded: hashed here, in memory
        meta[FINGERPRINT_KEY] = table_fingerprint(ds.sequences, ds.items)
    return ds


def _read_table(path: Path) -> pa.Table:
    try:
        # page checksums (written by write_prepared) turn a damaged page into an error instead of
        # other ids decoded from it
        return pq.read_table(path, memory_map=True, page_checksum_verification=True)
    except (pa.ArrowException, OSError) as e:
        problem = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatasetError(f"{path}: not a readable Parquet file ({problem}); {CHANGED}") from None


def check_dataset(ds: PreparedDataset, path: Path) -> None:
    """DatasetError unless the tables of the dataset directory `path` agree with each other and with
    meta.json: columns and types, users 0..n-1 with at least MIN_SEQUENCE_LENGTH items, item ids
    1..n_items, popularity, feature tokens and the counts in stats. Vectorised over loaded arrays."""
    seq_file, item_file, meta_file = path / SEQUENCES_FILE, path / ITEMS_FILE, path / META_FILE

    def wrong(file: Path, problem: str) -> DatasetError:
        return DatasetError(f"{file}: {problem}; {CHANGED}")

    features = ds.meta.get("features", {})
    if not isinstance(features, dict) or not all(isinstance(v, int) and v >= 1 for v in features.values()):
        raise wrong(meta_file, f"features must map names to vocabulary sizes, got {features!r}")
    columns = {f"feat_{name}": pa.list_(pa.int32()) for name in features}
    for file, table, expected in (
        (seq_file, ds.sequences, SEQUENCE_COLUMNS),
        (item_file, ds.items, {**ITEM_COLUMNS, **columns}),
    ):
        for name, kind in expected.items():
            if name not in table.column_names:
                raise wrong(file, f"no column {name!r} (columns: {', '.join(table.column_names)})")
            if table.schema.field(name).type != kind:
                raise wrong(file, f"column {name!r} is {table.schema.field(name).type}, expected {kind}")
            if table.column(name).null_count:
                raise wrong(file, f"column {name!r} has empty (null) entries")
    n_users, n_items = ds.n_users, ds.n_items
    if not np.array_equal(ds.sequences.column("user").to_numpy(), np.arange(n_users)):
        raise wrong(seq_file, f"column 'user' is not 0..{n_users - 1} in row order")
    if not np.array_equal(ds.items.column("item").to_numpy(), np.arange(n_items + 1)):
        raise wrong(item_file, f"column 'item' is not 0..{n_items} in row order")
    items_list = ds._list_array()
    if items_list.values.null_count:
        raise wrong(seq_file, "column 'items' holds empty (null) item ids")
    values, lengths = ds.values, ds.lengths
    if lengths.size and lengths.min() < MIN_SEQUENCE_LENGTH:
        user = int(np.argmin(lengths))
        raise wrong(seq_file, f"user {user} has {lengths[user]} items, fewer than {MIN_SEQUENCE_LENGTH}")
    outside = np.flatnonzero((values < 1) | (values > n_items))
    if outside.size:
        user = int(np.searchsorted(ds.offsets, outside[0], side="right")) - 1
        raise wrong(
            seq_file,
            f"user {user} holds item id {values[outside[0]]}, outside 1..{n_items} ({item_file.name} has {n_items} items)",
        )
    popularity = np.bincount(values, minlength=n_items + 1)
    popularity[0] = 0
    if not np.array_equal(ds.popularity, popularity):
        item = int(np.flatnonzero(ds.popularity != popularity)[0])
        raise wrong(
            item_file,
            f"popularity of item {item} is {ds.popularity[item]}, but {seq_file.name} holds it {popularity[item]} times",
        )
    for name, vocab in features.items():
        tokens = ds.items.column(f"feat_{name}").combine_chunks().values.to_numpy(zero_copy_only=False)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab):
            raise wrong(item_file, f"feature {name!r} has tokens outside 0..{vocab - 1} (its vocabulary in meta.json)")
    stats = ds.meta.get("stats")
    if not isinstance(stats, dict):
        raise wrong(meta_file, "no 'stats' object")
    held = {"users": (n_users, seq_file), "items": (n_items, item_file), "interactions": (ds.n_interactions, seq_file)}
    for key, (count, file) in held.items():
        if stats.get(key) != count:
            raise wrong(meta_file, f"stats.{key} is {stats.get(key)!r}, but {file.name} holds {count:,}")


def from_tables(
    sequences: pa.Table, items: pa.Table, meta: dict[str, Any], path: Path | None = None
) -> PreparedDataset:
    """Wrap Arrow tables (e.g. fetched from Ray's object store) as a PreparedDataset."""
    if "items" in sequences.column_names and sequences.column("items").num_chunks != 1:  # else check_dataset names it
        sequences = sequences.combine_chunks()
    return PreparedDataset(sequences=sequences, items=items, meta=meta, path=path)
