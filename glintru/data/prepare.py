"""Preparation: filter, order, deduplicate and remap an interaction table into a prepared dataset.

Steps of `prepare_table`, in order:

1. rating threshold: keep rows with rating >= min_rating (rows without a rating are dropped);
2. chronological order per user: a stable sort by (user, timestamp, original row order), so equal
   timestamps keep the order of the source file;
3. duplicates of a (user, item) pair: "first" keeps the earliest in that order, "last" the latest,
   "keep" keeps all of them (repeat consumption);
4. filtering, repeated until nothing changes: every user keeps at least max(k_core, 3) interactions
   and every item at least k_core (without k_core: users >= 3, items >= 1). The floor of 3 is what
   leave-one-out needs (one training, one validation, one test item); shorter users are dropped;
5. remapping: users get ids 0.. in order of first appearance in the source; items get ids 1..n in
   order of first appearance when walking the users' chronological sequences user by user; 0 is
   padding.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from glintru.data import sources
from glintru.data.dataset import MIN_SEQUENCE_LENGTH, check_prepared_out, write_prepared

DUPLICATE_POLICIES = ("first", "last", "keep")
TIE_BREAK = "timestamp, then original row order"
ID_ORDER = (
    "users by first appearance in the source; items by first appearance in the user-ordered chronological sequences"
)


@dataclass(frozen=True)
class PreparedInteractions:
    """Remapped chronological sequences: user u's items are values[offsets[u]:offsets[u+1]]."""

    values: np.ndarray  # int32 item ids 1..n_items
    offsets: np.ndarray  # int64, n_users + 1
    user_ids: list[str]  # original id of user u
    item_ids: list[str]  # original id of item i + 1
    counts: dict[str, int] = field(default_factory=dict)  # rows left after each step

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def sequences(self) -> list[np.ndarray]:
        return np.split(self.values, self.offsets[1:-1]) if self.n_users else []


def _as_frame(table: pd.DataFrame | pa.Table) -> pd.DataFrame:
    frame = table.to_pandas() if isinstance(table, pa.Table) else table
    missing = [c for c in ("user", "item") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"interaction table lacks column(s) {', '.join(missing)}; expected {', '.join(sources.COLUMNS)}"
        )
    return frame


def _chronological(users: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Stable order by (user, timestamp): equal keys keep their row order (the documented tie-break)."""
    t_rank = np.unique(ts, return_inverse=True)[1].reshape(-1).astype(np.int64)
    n_t = int(t_rank.max()) + 1 if t_rank.size else 1
    if users.size and int(users.max()) + 1 < (1 << 62) // n_t:
        # one stable sort of a combined integer key is much faster than a multi-key lexsort
        return np.argsort(users.astype(np.int64) * n_t + t_rank, kind="stable")
    return np.lexsort((t_rank, users))


def prepare_table(
    table: pd.DataFrame | pa.Table,
    *,
    min_rating: float | None = None,
    k_core: int | None = None,
    duplicates: str = "first",
) -> PreparedInteractions:
    """Filter, order and remap an interaction table (columns user, item, timestamp, rating; row
    order is the tie-break for equal timestamps). See the module docstring for the exact steps."""
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"unknown duplicate policy {duplicates!r}; choose one of {', '.join(DUPLICATE_POLICIES)}")
    if k_core is not None and k_core < 1:
        raise ValueError(f"k_core must be >= 1, got {k_core}")
    frame = _as_frame(table)
    n = len(frame)
    user_codes, user_uniques = pd.factorize(frame["user"].astype(str), sort=False)
    item_codes, item_uniques = pd.factorize(frame["item"].astype(str), sort=False)
    ts = frame["timestamp"].to_numpy(np.int64) if "timestamp" in frame.columns else np.arange(n, dtype=np.int64)
    counts = {"rows": n}

    rows = np.arange(n, dtype=np.int64)
    if min_rating is not None:
        rating = frame["rating"].to_numpy(np.float64) if "rating" in frame.columns else np.full(n, np.nan)
        if n and np.isnan(rating).all():
            raise ValueError("a rating threshold was given but the source has no ratings")
        with np.errstate(invalid="ignore"):
            rows = rows[rating >= min_rating]
        counts["after_min_rating"] = int(rows.size)

    rows = rows[_chronological(user_codes[rows], ts[rows])]

    if duplicates != "keep" and rows.size:
        key = user_codes[rows].astype(np.int64) * max(len(item_uniques), 1) + item_codes[rows]
        if duplicates == "first":
            pos = np.unique(key, return_index=True)[1]
        else:
            pos = rows.size - 1 - np.unique(key[::-1], return_index=True)[1]
        rows = rows[np.sort(pos)]
    counts["after_duplicates"] = int(rows.size)

    user_min = max(k_core or 0, MIN_SEQUENCE_LENGTH)
    item_min = k_core or 1
    rounds = 0
    while rows.size:
        u, it = user_codes[rows], item_codes[rows]
        uc = np.bincount(u, minlength=len(user_uniques))
        ic = np.bincount(it, minlength=len(item_uniques))
        ok = (uc[u] >= user_min) & (ic[it] >= item_min)
        if ok.all():
            break
        rows = rows[ok]
        rounds += 1
    counts["after_filtering"] = int(rows.size)
    counts["filter_rounds"] = rounds
    if not rows.size:
        raise ValueError(
            f"no interactions left after filtering (min_rating={min_rating}, k_core={k_core}, users need "
            f">= {user_min} interactions); relax the filters"
        )

    kept_users, user_index = np.unique(user_codes[rows], return_inverse=True)
    new_items, kept_items = pd.factorize(item_codes[rows], sort=False)
    lengths = np.bincount(user_index, minlength=kept_users.size)
    offsets = np.zeros(kept_users.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return PreparedInteractions(
        values=(new_items + 1).astype(np.int32),
        offsets=offsets,
        user_ids=[str(x) for x in np.asarray(user_uniques)[kept_users]],
        item_ids=[str(x) for x in np.asarray(item_uniques)[np.asarray(kept_items)]],
        counts=counts,
    )


def encode_features(
    raw: Mapping[str, Mapping[str, list[str]]], item_ids: list[str]
) -> tuple[dict[str, tuple[list[list[int]], int]], dict[str, dict[str, int]]]:
    """Token strings per original item id -> token-id lists per prepared item (index i is item i+1).

    Each feature's vocabulary is its tokens over the prepared items in sorted order, ids 1..V
    (0 = none, vocabulary size V + 1). Features no prepared item has are left out. Also returns
    coverage: {feature: {"vocab": V + 1, "items": items with at least one token}}."""
    out: dict[str, tuple[list[list[int]], int]] = {}
    coverage: dict[str, dict[str, int]] = {}
    for name, per_item in raw.items():
        token_lists = [per_item.get(i) or [] for i in item_ids]
        vocab = sorted({t for toks in token_lists for t in toks})
        if not vocab:
            continue
        index = {t: k + 1 for k, t in enumerate(vocab)}
        out[name] = ([[index[t] for t in toks] for toks in token_lists], len(vocab) + 1)
        coverage[name] = {"vocab": len(vocab) + 1, "items": sum(1 for toks in token_lists if toks)}
    return out, coverage


def file_record(path: str | os.PathLike) -> dict[str, Any]:
    """Name, size and sha256 of a source file (what meta.json records as provenance)."""
    p = Path(path)
    digest = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return {"path": str(p.resolve()), "name": p.name, "bytes": p.stat().st_size, "sha256": digest.hexdigest()}


_GENERIC_STEMS = {"ratings", "u", "data", "interactions", "inter", "reviews", "train", "ratings_only"}


def default_name(input_path: str | os.PathLike) -> str:
    """A dataset name from its source path: the directory for generic file names (ml-1m/ratings.dat)."""
    p = Path(input_path)
    if p.is_dir():
        return p.resolve().name
    stem = p.name
    for suffix in (".gz", ".json", ".jsonl", ".csv", ".dat", ".data", ".txt", ".inter", ".parquet"):
        stem = stem.removesuffix(suffix)
    return p.resolve().parent.name if stem.lower() in _GENERIC_STEMS or not stem else stem


def prepare(
    fmt: str,
    input_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    items_path: str | os.PathLike | None = None,
    min_rating: float | None = None,
    k_core: int | None = None,
    duplicates: str = "first",
    columns: Mapping[str, str] | str | None = None,
    name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Read a raw log, prepare it and write the dataset directory `out_dir` (atomically).

    For MovieLens without `items_path`, a movies.dat/movies.csv/u.item beside the ratings file is
    used for the genre, year and title features. Everything that can fail (reading, parsing,
    filtering) happens before anything is written."""
    inputs = {"--input": input_path, "--items": items_path}
    check_prepared_out(out_dir, overwrite, inputs)  # before the reading, which may take minutes
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"unknown duplicate policy {duplicates!r}; choose one of {', '.join(DUPLICATE_POLICIES)}")
    mapping = sources.parse_columns(columns)
    source_file = sources.resolve_input(fmt, Path(input_path))
    table = sources.read_interactions(fmt, source_file, columns=mapping)
    prepared = prepare_table(table, min_rating=min_rating, k_core=k_core, duplicates=duplicates)

    item_file = Path(items_path) if items_path is not None else sources.find_item_file(fmt, Path(input_path))
    features: dict[str, tuple[list[list[int]], int]] | None = None
    coverage: dict[str, dict[str, int]] = {}
    if item_file is not None:
        raw = sources.read_item_features(
            fmt, item_file, items=prepared.item_ids, item_column=(mapping or {}).get("item")
        )
        features, coverage = encode_features(raw, prepared.item_ids)

    files = [file_record(source_file)] + ([file_record(item_file)] if item_file is not None else [])
    params = {
        "format": fmt,
        "min_rating": min_rating,
        "k_core": k_core,
        "duplicates": duplicates,
        "columns": mapping,
        "min_sequence_length": MIN_SEQUENCE_LENGTH,
        "tie_break": TIE_BREAK,
        "id_order": ID_ORDER,
        "counts": prepared.counts,
        "feature_coverage": coverage,
    }
    return write_prepared(
        out_dir,
        prepared.sequences,
        prepared.user_ids,
        prepared.item_ids,
        name=name or default_name(input_path),
        source={"format": fmt, "files": files},
        params=params,
        features=features or None,
        overwrite=overwrite,
        inputs=inputs,
    )


def format_stats(meta: Mapping[str, Any]) -> str:
    """Human-readable statistics of a prepared dataset (what `glintru stats DIR` prints)."""
    st = meta.get("stats", {})
    lines = [
        f"name          {meta.get('name', '?')}",
        f"users         {st.get('users', 0):,}",
        f"items         {st.get('items', 0):,}",
        f"interactions  {st.get('interactions', 0):,}",
        f"avg length    {st.get('avg_length', 0.0):.2f}",
        f"sparsity      {100 * st.get('sparsity', 1.0):.4f}%",
    ]
    src = meta.get("source") or {}
    files = src.get("files") or []
    desc = ", ".join(f"{f.get('name')} (sha256 {str(f.get('sha256', ''))[:12]})" for f in files)
    lines.append(f"source        {src.get('format', '?')}" + (f": {desc}" if desc else ""))
    params = meta.get("params") or {}
    shown = {k: v for k, v in params.items() if k not in ("counts", "feature_coverage", "id_order", "tie_break")}
    if shown:
        lines.append("params        " + " ".join(f"{k}={v}" for k, v in shown.items()))
    if params.get("counts"):
        lines.append("counts        " + " ".join(f"{k}={v:,}" for k, v in params["counts"].items()))
    feats = meta.get("features") or {}
    if feats:
        lines.append("features      " + ", ".join(f"{k} (vocab {v:,})" for k, v in feats.items()))
    return "\n".join(lines)
