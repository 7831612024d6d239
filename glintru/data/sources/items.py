"""Item side-feature readers: MovieLens movie files, Amazon product metadata, RecBole .item
files and generic item tables; each returns {feature: {original item id: [token, ...]}}."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from glintru.data.sources.readers import (
    is_parquet,
    parse_record,
    recbole_header,
    sniff_delimiter,
)
from glintru.data.sources.text import (
    MOVIELENS_MOVIES,
    SourceFormatError,
    first_line,
    lines,
    plural,
    read_bytes,
    resolve_file,
)

# ----------------------------------------------------------------------------- item features

_ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_WORD = re.compile(r"[a-z0-9]+")
ItemFeatures = dict[str, dict[str, list[str]]]


def _title_tokens(title: str) -> tuple[list[str], list[str]]:
    """(title word tokens, [year]) from a MovieLens title such as 'American President, The (1995)'."""
    m = _YEAR.search(title)
    year = [m.group(1)] if m else []
    words = _WORD.findall((title[: m.start()] if m else title).lower())
    return list(dict.fromkeys(words)), year


def _genres(text: str) -> list[str]:
    return [g for g in text.strip().split("|") if g and g != "(no genres listed)"]


def read_movielens_items(path: str | Path) -> ItemFeatures:
    """MovieLens movie table: ML-1M/10M movies.dat (latin-1), ML-20M+ movies.csv, ML-100K u.item.
    Features: genre, year (release year from the title) and title (lower-cased title words)."""
    p = resolve_file(path, "movielens", MOVIELENS_MOVIES, "MovieLens movie file")
    data = read_bytes(p)
    name = p.name.lower().removesuffix(".gz")
    feats: ItemFeatures = {"genre": {}, "year": {}, "title": {}}

    def add(movie: str, title: str, genres: list[str]) -> None:
        words, year = _title_tokens(title)
        feats["genre"][movie], feats["year"][movie], feats["title"][movie] = genres, year, words

    if name.endswith(".csv"):
        expected = "a header movieId,title,genres and comma-separated rows (MovieLens movies.csv)"
        lineno, first, _ = first_line(p, data, expected)
        if [h.strip() for h in first.split(",")][:3] != ["movieId", "title", "genres"]:
            raise SourceFormatError(p, lineno, f"unexpected header {first!r}; expected {expected}")
        rows = csv.reader(data.decode("utf-8", errors="replace").splitlines()[lineno:])
        try:
            for k, row in enumerate(rows, start=lineno + 1):
                if not row:
                    continue
                if len(row) != 3 or not row[0].isdigit():
                    raise SourceFormatError(
                        p, k, f"expected 3 fields movieId,title,genres, got {row!r}; expected {expected}"
                    )
                add(row[0], row[1], _genres(row[2]))
        except csv.Error as exc:  # e.g. a field past the csv module's size limit
            raise SourceFormatError(p, lineno + rows.line_num, f"unreadable ({exc}); expected {expected}") from None
        return feats
    item_format = name.endswith(".item")
    sep, n = ("|", 24) if item_format else ("::", 3)
    expected = (
        "24 '|'-separated fields id|title|release date|video date|url|19 genre flags (MovieLens u.item)"
        if item_format
        else "3 '::'-separated fields MovieID::Title (Year)::Genre|Genre (MovieLens movies.dat)"
    )
    first_line(p, data, expected, encoding="latin-1")
    for lineno, line in lines(data, encoding="latin-1"):
        parts = line.split(sep)
        if len(parts) != n:
            hint = " (wrong delimiter?)" if len(parts) == 1 else ""
            raise SourceFormatError(p, lineno, f"expected {expected}, got {plural(len(parts), 'field')}{hint}")
        if not parts[0].isdigit():
            raise SourceFormatError(p, lineno, f"movie id {parts[0]!r} is not an integer; expected {expected}")
        genres = [g for g, flag in zip(_ML100K_GENRES, parts[5:]) if flag == "1"] if item_format else _genres(parts[2])
        add(parts[0], parts[1], genres)
    return feats


_ASIN_KEY = re.compile(r"""["'](?:parent_asin|asin)["']\s*:\s*["']([^"']+)["']""")
_META_EXPECT = "one product object per line with 'asin' (or 'parent_asin') and categories/category, brand"


def _flatten(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    out: list[str] = []
    for v in value if isinstance(value, (list, tuple)) else [value]:
        out.extend(_flatten(v))
    return out


def _clean(tokens: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(t.strip() for t in tokens if isinstance(t, str) and t.strip()))


def read_amazon_items(path: str | Path, items: Iterable[str] | None = None) -> ItemFeatures:
    """Amazon product metadata (JSON lines or the 2014 Python-literal dump, optionally gzipped).
    Features: category (every category on the item's category paths) and brand (2023: store or
    details.Brand). `items` limits parsing to those product ids, which skips most lines quickly."""
    p = resolve_file(path, "amazon-json")
    data = read_bytes(p)
    first_line(p, data, _META_EXPECT)
    wanted = set(items) if items is not None else None
    feats: ItemFeatures = {"category": {}, "brand": {}}
    for lineno, line in lines(data):
        if wanted is not None:
            ids = _ASIN_KEY.findall(line)
            if ids and not any(i in wanted for i in ids):
                continue
        rec = parse_record(p, lineno, line, _META_EXPECT)
        asin = rec.get("parent_asin") or rec.get("asin")
        if not asin:
            raise SourceFormatError(p, lineno, f"missing key 'asin'; expected {_META_EXPECT}")
        asin = str(asin)
        if wanted is not None and asin not in wanted:
            continue
        cats = _clean(_flatten(rec.get("categories")) + _flatten(rec.get("category")))
        details = rec.get("details")
        if not isinstance(details, dict):
            details = {}
        brand = rec.get("brand") or details.get("Brand") or rec.get("store")
        feats["category"][asin] = cats
        feats["brand"][asin] = _clean([brand]) if isinstance(brand, str) else []
    return feats


def read_recbole_items(path: str | Path, items: Iterable[str] | None = None) -> ItemFeatures:
    """RecBole .item file: every token field becomes a one-token feature, every token_seq field a
    space-separated token list; float fields are not categorical and are left out."""
    p = resolve_file(path, "recbole")
    data = read_bytes(p)
    expected = "a RecBole .item file: tab-separated header such as item_id:token<TAB>genre:token_seq"
    lineno, first, after = first_line(p, data, expected)
    names, types = recbole_header(p, lineno, first, expected)
    if "item_id" not in names:
        raise SourceFormatError(p, lineno, f"missing column 'item_id:token' in header; expected {expected}")
    key = names.index("item_id")
    cols = [(i, n, t) for i, (n, t) in enumerate(zip(names, types)) if i != key and t in ("token", "token_seq")]
    feats: ItemFeatures = {n: {} for _, n, _ in cols}
    wanted = set(items) if items is not None else None
    for k, line in lines(data[after:]):
        parts = line.split("\t")
        if len(parts) != len(names):
            raise SourceFormatError(
                p,
                lineno + k,
                f"expected {plural(len(names), 'field')} like the header, got {plural(len(parts), 'field')}",
            )
        item = parts[key]
        if wanted is not None and item not in wanted:
            continue
        for i, n, t in cols:
            feats[n][item] = _clean(parts[i].split(" ") if t == "token_seq" else [parts[i]])
    return feats


def read_table_items(
    path: str | Path, items: Iterable[str] | None = None, item_column: str | None = None
) -> ItemFeatures:
    """A generic item table (CSV with header, or Parquet): the item column (`item_column`, else 'item',
    'item_id' or the first column) plus one feature per other column; '|' separates several tokens."""
    p = Path(path)
    if is_parquet(p):
        frame = pq.read_table(p).to_pandas()
    else:
        data = read_bytes(p)
        _, first, _ = first_line(p, data, "an item table with a header row")
        frame = pd.read_csv(io.BytesIO(data), sep=sniff_delimiter(first), dtype=str, keep_default_na=False)
    header = [str(c) for c in frame.columns]
    if item_column in header:
        key = item_column
    else:
        key = next((c for c in ("item", "item_id", "itemId", "iid", "asin", "movieId") if c in header), header[0])
    wanted = set(items) if items is not None else None
    ids = frame[key].astype(str).tolist()
    feats: ItemFeatures = {}
    for col in header:
        if col == key:
            continue
        values = frame[col].astype(str).tolist()
        feats[col] = {i: _clean(v.split("|")) for i, v in zip(ids, values) if wanted is None or i in wanted}
    return feats
