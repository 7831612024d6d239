"""Readers for raw interaction logs (MovieLens, Amazon reviews, RecBole, sequence text, CSV/Parquet)
and for item side features; every reader returns the same normalised interaction table.

The interaction table is a pandas DataFrame with one row per interaction, rows in the order of the
source file (that order is the tie-break for equal timestamps)::

    user       str      original user id
    item       str      original item id
    timestamp  int64    time in the source's own unit (seconds for MovieLens and Amazon 2014/2018,
                        milliseconds for Amazon 2023, nanoseconds since the epoch for date strings);
                        formats without time (sequence text) use the running line/position order
    rating     float64  the rating, NaN where the format has none

Item features are returned as ``{feature: {original item id: [token, ...]}}`` with string tokens;
`glintru.data.prepare` turns them into token ids for the prepared items.

Large text formats are parsed with pyarrow; only when that fails is the file re-read line by line
to name the first bad line, so a bad file still gets a precise `SourceFormatError`.

`SOURCE_FORMATS` is the one registry of formats: `glintru prepare --format` takes its choices from
it, and a new format is one `SourceFormat` entry (see CONTRIBUTING.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from glintru.data.sources.items import (
    ItemFeatures,
    read_amazon_items,
    read_movielens_items,
    read_recbole_items,
    read_table_items,
)
from glintru.data.sources.readers import (
    parse_columns,
    read_amazon_csv,
    read_amazon_json,
    read_csv,
    read_movielens,
    read_recbole,
    read_seq_txt,
)
from glintru.data.sources.text import (
    COLUMNS,
    MAPPING_KEYS,
    MOVIELENS_MOVIES,
    MOVIELENS_RATINGS,
    SourceFormatError,
    find_beside,
    make_table,
    read_bytes,
    resolve_file,
)


def _movielens_items(path: str | Path, items: Iterable[str] | None, item_column: str | None) -> ItemFeatures:
    feats = read_movielens_items(path)
    if items is None:
        return feats
    keep = set(items)
    return {n: {i: t for i, t in f.items() if i in keep} for n, f in feats.items()}


@dataclass(frozen=True)
class SourceFormat:
    """One raw format: how to read its interactions and, with `--items FILE`, its item features.

    read(path, columns) -> interaction table; `columns` is the user's column mapping (only formats
    with `takes_columns` accept one). read_items(path, items, item_column) -> ItemFeatures.
    dir_names: files looked for when the input is a directory (empty: the input must be a file).
    items_beside: item files picked up automatically from the input's directory.
    """

    name: str
    files: str  # what the user passes, for `--help` and docs/DATA.md
    read: Callable[[Path, dict[str, str] | None], pd.DataFrame]
    read_items: Callable[[str | Path, Iterable[str] | None, str | None], ItemFeatures]
    takes_columns: bool = False
    dir_names: tuple[str, ...] = ()
    items_beside: tuple[str, ...] = ()


SOURCE_FORMATS: dict[str, SourceFormat] = {
    f.name: f
    for f in (
        SourceFormat(
            "movielens",
            "ML-1M/10M ratings.dat, ML-100K u.data, ML-20M+ ratings.csv (or their directory)",
            lambda p, c: read_movielens(p),
            _movielens_items,
            dir_names=MOVIELENS_RATINGS,
            items_beside=MOVIELENS_MOVIES,
        ),
        SourceFormat(
            "amazon-json",
            "Amazon 2014 5-core / 2018 / 2023 review JSON lines (.gz or plain)",
            lambda p, c: read_amazon_json(p),
            lambda p, i, col: read_amazon_items(p, i),
        ),
        SourceFormat(
            "amazon-csv",
            "Amazon ratings-only CSV user,item,rating,timestamp (no header)",
            lambda p, c: read_amazon_csv(p),
            lambda p, i, col: read_amazon_items(p, i),
        ),
        SourceFormat(
            "recbole",
            "RecBole atomic .inter file with a typed header",
            lambda p, c: read_recbole(p),
            lambda p, i, col: read_recbole_items(p, i),
        ),
        SourceFormat(
            "seq-txt",
            "one line per user: 'user item item ...' in time order",
            lambda p, c: read_seq_txt(p),
            read_table_items,
        ),
        SourceFormat(
            "csv",
            "any CSV or Parquet, with --columns user=...,item=...,time=...[,rating=...]",
            read_csv,
            read_table_items,
            takes_columns=True,
        ),
    )
}
FORMATS = tuple(SOURCE_FORMATS)  # the built-in formats; SOURCE_FORMATS also holds registered ones


def register_format(spec: SourceFormat) -> None:
    """Add a raw format (a plugin, or a test's toy format); its name must be new."""
    if spec.name in SOURCE_FORMATS:
        raise ValueError(f"format {spec.name!r} is already registered")
    SOURCE_FORMATS[spec.name] = spec


def unregister_format(name: str) -> None:
    SOURCE_FORMATS.pop(name, None)


def get_format(fmt: str) -> SourceFormat:
    if fmt not in SOURCE_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(SOURCE_FORMATS)}")
    return SOURCE_FORMATS[fmt]


def resolve_input(fmt: str, path: str | Path) -> Path:
    """The file a format reads from `path` (a MovieLens directory resolves to its ratings file)."""
    spec = get_format(fmt)
    return resolve_file(path, fmt, spec.dir_names, f"{fmt} input file")


def read_interactions(fmt: str, path: str | Path, *, columns: Mapping[str, str] | str | None = None) -> pd.DataFrame:
    """Read an interaction log of format `fmt` (one of FORMATS) into the normalised table."""
    spec = get_format(fmt)
    if columns and not spec.takes_columns:
        raise ValueError(f"a column mapping only applies to --format csv, not {fmt!r}")
    return spec.read(resolve_input(fmt, path), parse_columns(columns) if columns else None)


def read_item_features(
    fmt: str, path: str | Path, *, items: Iterable[str] | None = None, item_column: str | None = None
) -> ItemFeatures:
    """Item side features for an interaction format: MovieLens movie files, Amazon metadata, RecBole
    .item files, or (csv, seq-txt) a generic item table. `items` restricts to those original ids."""
    return get_format(fmt).read_items(path, items, item_column)


def find_item_file(fmt: str, input_path: str | Path) -> Path | None:
    """The item file that sits beside the input (MovieLens movies.dat/u.item), if the format has one."""
    names = get_format(fmt).items_beside
    return find_beside(input_path, names) if names else None


__all__ = [
    "COLUMNS",
    "FORMATS",
    "MAPPING_KEYS",
    "SOURCE_FORMATS",
    "ItemFeatures",
    "SourceFormat",
    "SourceFormatError",
    "find_item_file",
    "get_format",
    "register_format",
    "unregister_format",
    "make_table",
    "parse_columns",
    "read_amazon_csv",
    "read_amazon_items",
    "read_amazon_json",
    "read_bytes",
    "read_csv",
    "read_interactions",
    "read_item_features",
    "read_movielens",
    "read_movielens_items",
    "read_recbole",
    "read_recbole_items",
    "read_seq_txt",
    "read_table_items",
    "resolve_input",
]
