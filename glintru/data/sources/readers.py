"""Interaction readers, one per raw format: MovieLens, Amazon reviews (JSON lines and ratings
CSV), RecBole atomic files, sequence text, and generic CSV/Parquet with a column mapping."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from glintru.data.sources.text import (
    MAPPING_KEYS,
    MOVIELENS_RATINGS,
    SEP_NAMES,
    SourceFormatError,
    check_finite_times,
    check_ids,
    csv_fields,
    first_line,
    lines,
    make_table,
    plural,
    read_bytes,
    read_delimited,
    resolve_file,
    row_line,
    strings,
    time_to_int64,
)

# ----------------------------------------------------------------------------- MovieLens

_ML_EXPECT_DAT = "4 '::'-separated fields user::item::rating::timestamp (MovieLens ratings.dat)"
_ML_EXPECT_TAB = "4 tab-separated fields user<TAB>item<TAB>rating<TAB>timestamp (MovieLens u.data)"
_ML_CSV_HEADER = ("userId", "movieId", "rating", "timestamp")
_ML_EXPECT_CSV = "a header userId,movieId,rating,timestamp and comma-separated rows (MovieLens ratings.csv)"
_ML_LABELS = ["user id", "item id", "rating", "timestamp"]
_ML_KINDS = ["int", "int", "float", "int"]


def _movielens_layout(path: Path, first: str) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".dat"):
        return "dat"
    if name.endswith(".data"):
        return "tab"
    if name.endswith(".csv"):
        return "csv"
    if "::" in first:
        return "dat"
    if first.startswith("userId"):
        return "csv"
    if "\t" in first:
        return "tab"
    raise SourceFormatError(
        path, 1, f"not a MovieLens ratings file; expected {_ML_EXPECT_DAT}, {_ML_EXPECT_TAB} or {_ML_EXPECT_CSV}"
    )


def read_movielens(path: str | Path) -> pd.DataFrame:
    """MovieLens ratings: ML-1M/10M ratings.dat, ML-100K u.data, ML-20M/25M/latest ratings.csv.
    The layout is chosen by file name, else by the first line; a directory resolves to its ratings file."""
    p = resolve_file(path, "movielens", MOVIELENS_RATINGS, "MovieLens ratings file")
    data = read_bytes(p)
    lineno, first, after = first_line(p, data, "MovieLens ratings")
    layout = _movielens_layout(p, first)
    if layout == "csv":
        header = first.split(",")
        missing = [c for c in _ML_CSV_HEADER if c not in header]
        if missing:
            hint = " (wrong delimiter?)" if len(header) == 1 else ""
            raise SourceFormatError(
                p, lineno, f"missing column {missing[0]!r} in header {first!r}{hint}; expected {_ML_EXPECT_CSV}"
            )
        kinds = [dict(zip(_ML_CSV_HEADER, _ML_KINDS)).get(h, "skip") for h in header]
        labels = [dict(zip(_ML_CSV_HEADER, _ML_LABELS)).get(h, h) for h in header]
        table = read_delimited(
            p,
            data,
            start=after,
            first_lineno=lineno + 1,
            sep=",",
            fields=header,
            kinds=kinds,
            labels=labels,
            expected=_ML_EXPECT_CSV,
        )
        cols = ("userId", "movieId", "timestamp", "rating")
    else:
        sep, expected = ("::", _ML_EXPECT_DAT) if layout == "dat" else ("\t", _ML_EXPECT_TAB)
        fields = ["user", "item", "rating", "timestamp"]
        table = read_delimited(
            p,
            data,
            start=0,
            first_lineno=1,
            sep=sep,
            fields=fields,
            kinds=_ML_KINDS,
            labels=_ML_LABELS,
            expected=expected,
        )
        cols = ("user", "item", "timestamp", "rating")
    return make_table(*(table.column(c) for c in cols))


# ----------------------------------------------------------------------------- Amazon reviews

_AMAZON_EXPECT = (
    "one review object per line with keys reviewerID, asin, overall, unixReviewTime (Amazon 2014/2018) "
    "or user_id, parent_asin, rating, timestamp (Amazon 2023)"
)
_AMAZON_CSV_EXPECT = "4 comma-separated fields user,item,rating,timestamp without a header (Amazon ratings CSV)"


def parse_record(path: Path, lineno: int, line: str, expected: str) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        # The 2014 metadata (and some older review dumps) are Python literals, not JSON.
        try:
            obj = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise SourceFormatError(
                path, lineno, f"invalid JSON ({exc.msg} at column {exc.colno}); expected {expected}"
            ) from None
    if not isinstance(obj, dict):
        raise SourceFormatError(path, lineno, f"expected a JSON object, got {type(obj).__name__}; expected {expected}")
    return obj


def _amazon_keys(path: Path, lineno: int, record: dict) -> tuple[str, str, str, str]:
    if "reviewerID" in record:
        return "reviewerID", "asin", "overall", "unixReviewTime"
    if "user_id" in record:
        return "user_id", "parent_asin" if "parent_asin" in record else "asin", "rating", "timestamp"
    raise SourceFormatError(
        path,
        lineno,
        f"no 'reviewerID' or 'user_id' key (keys: {', '.join(map(str, record))}); expected {_AMAZON_EXPECT}",
    )


def read_amazon_json(path: str | Path) -> pd.DataFrame:
    """Amazon review dumps, JSON lines (optionally gzipped): 2014 5-core (also its Python-literal
    variant), 2018 (same keys) and 2023 (user_id, parent_asin else asin, rating, timestamp in ms)."""
    p = resolve_file(path, "amazon-json")
    data = read_bytes(p)
    lineno, first, _ = first_line(p, data, _AMAZON_EXPECT)
    keys = _amazon_keys(p, lineno, parse_record(p, lineno, first, _AMAZON_EXPECT))
    table = None
    try:
        json.loads(first)
        schema = pa.schema(
            [(keys[0], pa.string()), (keys[1], pa.string()), (keys[2], pa.float64()), (keys[3], pa.int64())]
        )
        table = pajson.read_json(
            pa.BufferReader(pa.py_buffer(data)),
            read_options=pajson.ReadOptions(block_size=1 << 24),
            parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
        if any(table.column(k).null_count for k in (keys[0], keys[1], keys[3])):
            table = None
    except (json.JSONDecodeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        table = None
    if table is not None:
        ids = {k: table.column(k) for k in keys[:2]}
        check_ids(p, ids, lambda r: row_line(data, 0, 1, r))
        return make_table(*(table.column(k) for k in (keys[0], keys[1], keys[3], keys[2])))
    return _read_amazon_json_lines(p, data, keys)


def _read_amazon_json_lines(path: Path, data: bytes, keys: tuple[str, str, str, str]) -> pd.DataFrame:
    users: list[str] = []
    items: list[str] = []
    times: list[int] = []
    ratings: list[float] = []
    linenos: list[int] = []
    ukey, ikey, rkey, tkey = keys
    for lineno, line in lines(data):
        linenos.append(lineno)
        rec = parse_record(path, lineno, line, _AMAZON_EXPECT)
        for k in (ukey, ikey, tkey):
            if rec.get(k) in (None, ""):
                raise SourceFormatError(path, lineno, f"missing key {k!r}; expected {_AMAZON_EXPECT}")
        t = rec[tkey]
        if isinstance(t, bool) or not isinstance(t, (int, float, str)) or not re.fullmatch(r"-?\d+(\.0*)?", str(t)):
            raise SourceFormatError(path, lineno, f"{tkey} {t!r} is not an integer time; expected {_AMAZON_EXPECT}")
        r = rec.get(rkey)
        try:
            ratings.append(float("nan") if r is None else float(r))
        except (TypeError, ValueError):
            raise SourceFormatError(path, lineno, f"{rkey} {r!r} is not a number; expected {_AMAZON_EXPECT}") from None
        users.append(str(rec[ukey]))
        items.append(str(rec[ikey]))
        times.append(int(float(t)))
    check_ids(path, {ukey: pa.array(users, pa.string()), ikey: pa.array(items, pa.string())}, linenos.__getitem__)
    return make_table(users, items, np.asarray(times, dtype=np.int64), np.asarray(ratings, dtype=np.float64))


def read_amazon_csv(path: str | Path) -> pd.DataFrame:
    """Amazon ratings-only CSV (2014 layout): user,item,rating,timestamp, no header."""
    p = resolve_file(path, "amazon-csv")
    data = read_bytes(p)
    first_line(p, data, _AMAZON_CSV_EXPECT)
    table = read_delimited(
        p,
        data,
        start=0,
        first_lineno=1,
        sep=",",
        fields=["user", "item", "rating", "timestamp"],
        kinds=["str", "str", "float", "int"],
        labels=["user", "item", "rating", "timestamp"],
        expected=_AMAZON_CSV_EXPECT,
        quoted=True,
    )
    return make_table(*(table.column(c) for c in ("user", "item", "timestamp", "rating")))


# ----------------------------------------------------------------------------- RecBole atomic files

_RECBOLE_TYPES = {"token", "token_seq", "float", "float_seq"}
_RECBOLE_EXPECT = "a RecBole .inter file: tab-separated header such as user_id:token<TAB>item_id:token<TAB>rating:float<TAB>timestamp:float"


def recbole_header(path: Path, lineno: int, line: str, expected: str) -> tuple[list[str], list[str]]:
    names, types = [], []
    for field in line.split("\t"):
        name, _, typ = field.partition(":")
        if typ not in _RECBOLE_TYPES:
            raise SourceFormatError(
                path, lineno, f"header field {field!r} has no ':token'/':float' type suffix; expected {expected}"
            )
        names.append(name)
        types.append(typ)
    return names, types


def read_recbole(path: str | Path) -> pd.DataFrame:
    """RecBole atomic interaction file (.inter): user_id and item_id required, rating and timestamp used
    when present (fractional timestamps are replaced by their rank, which keeps their order)."""
    p = resolve_file(path, "recbole")
    data = read_bytes(p)
    lineno, first, after = first_line(p, data, _RECBOLE_EXPECT)
    names, types = recbole_header(p, lineno, first, _RECBOLE_EXPECT)
    for need in ("user_id", "item_id"):
        if need not in names:
            raise SourceFormatError(p, lineno, f"missing column '{need}:token' in header; expected {_RECBOLE_EXPECT}")
    wanted = {"user_id": "str", "item_id": "str", "rating": "float", "timestamp": "float"}
    kinds = [wanted.get(n, "skip") if t in ("token", "float") else "skip" for n, t in zip(names, types)]
    labels = [f"{n}:{t}" for n, t in zip(names, types)]
    expected = f"{len(names)} tab-separated fields {'<TAB>'.join(labels)} (RecBole .inter)"
    table = read_delimited(
        p,
        data,
        start=after,
        first_lineno=lineno + 1,
        sep="\t",
        fields=names,
        kinds=kinds,
        labels=labels,
        expected=expected,
    )
    cols = {n: table.column(n) for n in table.column_names}
    if "timestamp" in cols:
        check_finite_times(
            p, cols["timestamp"].to_numpy(), lambda r: row_line(data, after, lineno + 1, r), "timestamp:float"
        )
    return make_table(cols["user_id"], cols["item_id"], cols.get("timestamp"), cols.get("rating"))


# ----------------------------------------------------------------------------- sequence text

_SEQ_EXPECT = "one user per line: 'user item item ...' separated by spaces, items in chronological order"


def read_seq_txt(path: str | Path) -> pd.DataFrame:
    """Sequence text (SASRec/S3-Rec style): `user item item ...` per line, whitespace-separated.
    Time is the running position in the file, so a user split over several lines (e.g. the
    one-interaction-per-line `user item` files) keeps its order."""
    p = resolve_file(path, "seq-txt")
    data = read_bytes(p)
    first_line(p, data, _SEQ_EXPECT)
    users: list[str] = []
    counts: list[int] = []
    items: list[str] = []
    for lineno, line in lines(data):
        parts = line.split()
        if len(parts) < 2:
            hint = " (wrong delimiter?)" if any(c in line for c in ",;|") else ""
            raise SourceFormatError(p, lineno, f"expected {_SEQ_EXPECT}, got {plural(len(parts), 'field')}{hint}")
        users.append(parts[0])
        counts.append(len(parts) - 1)
        items.extend(parts[1:])
    return make_table(np.repeat(np.asarray(users, dtype=object), counts), items)


# ----------------------------------------------------------------------------- generic CSV / Parquet

_DEFAULT_NAMES = {
    "user": ("user", "user_id", "userId", "userid", "uid", "reviewerID", "session_id"),
    "item": ("item", "item_id", "itemId", "itemid", "iid", "movieId", "asin", "parent_asin", "product_id"),
    "time": ("timestamp", "time", "ts", "unixReviewTime", "datetime", "date"),
    "rating": ("rating", "overall", "score"),
}


def parse_columns(spec: str | Mapping[str, str] | None) -> dict[str, str] | None:
    """A column mapping from `user=uid,item=iid,time=ts,rating=r` (CLI form) or a dict; keys are
    user, item, time (alias timestamp) and rating. Integer values address columns by position."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, str):
        pairs = {}
        for part in spec.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ValueError(f"bad column mapping {part!r}; expected key=column, e.g. user=uid,item=iid,time=ts")
            pairs[key.strip()] = value.strip()
        spec = pairs
    out: dict[str, str] = {}
    for key, value in spec.items():
        key = "time" if key == "timestamp" else key
        if key not in MAPPING_KEYS:
            raise ValueError(f"unknown column mapping key {key!r}; use {', '.join(MAPPING_KEYS)}")
        out[key] = str(value)
    return out


def _resolve_mapping(
    path: Path, line: int | None, header: list[str], columns: dict[str, str] | None, unit: str = "line"
) -> dict[str, str]:
    mapping = dict(columns or {})
    for key in MAPPING_KEYS:
        if key not in mapping and not columns:
            found = next((n for n in _DEFAULT_NAMES[key] if n in header), None)
            if found:
                mapping[key] = found
    expect = "columns given by --columns user=COL,item=COL[,time=COL][,rating=COL]"
    for key in ("user", "item"):
        if key not in mapping:
            raise SourceFormatError(
                path, line, f"no {key} column (columns: {', '.join(header)}); expected {expect}", unit
            )
    for key, col in mapping.items():
        if col not in header:
            raise SourceFormatError(
                path, line, f"missing column {col!r} for {key} (columns: {', '.join(header)}); expected {expect}", unit
            )
    return mapping


def sniff_delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def is_parquet(path: Path) -> bool:
    if path.suffix.lower() in (".parquet", ".pq"):
        return True
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


def _time_column(path: Path, arr: pa.ChunkedArray, row_line, unit: str = "line") -> np.ndarray:
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        values = arr.to_numpy()
        check_finite_times(path, values, row_line, "time", unit)
        return time_to_int64(values)
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return time_to_int64(pc.cast(pc.cast(arr, pa.timestamp("ns")), pa.int64()).to_numpy())
    values = pd.Series(arr.to_pandas())
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        raise SourceFormatError(
            path,
            row_line(int(bad[0])),
            f"time {values.iloc[bad[0]]!r} is neither a number nor a date; expected a numeric timestamp or a date string",
            unit,
        )
    return parsed.to_numpy().astype("datetime64[ns]").astype(np.int64)


def read_csv(path: str | Path, columns: Mapping[str, str] | str | None = None) -> pd.DataFrame:
    """Generic CSV (delimiter sniffed from the header: comma, tab, semicolon or '|') or Parquet with a
    column mapping (see `parse_columns`); without one, common names (user_id, item_id, timestamp...)
    are looked up. A mapping of integer positions reads a CSV without header."""
    p = resolve_file(path, "csv")
    mapping = parse_columns(columns)
    if is_parquet(p):
        return _read_parquet(p, mapping)
    data = read_bytes(p)
    lineno, first, after = first_line(p, data, "a CSV file with a header row")
    sep = sniff_delimiter(first)
    positional = bool(mapping and all(v.isdigit() for v in mapping.values()))
    fields = csv_fields(p, lineno, first, sep, "a CSV file with a header row")
    if positional:
        header = [str(i) for i in range(len(fields))]
        start, body_line = 0, 1
    else:
        header = [h.strip() for h in fields]
        start, body_line = after, lineno + 1
    mapping = _resolve_mapping(p, lineno, header, mapping)
    role = {col: key for key, col in mapping.items()}
    kind_of = {"user": "str", "item": "str", "time": "str", "rating": "float?"}
    kinds = [kind_of[role[h]] if h in role else "skip" for h in header]
    labels = [f"{role[h]} column {h!r}" if h in role else h for h in header]
    expected = f"{len(header)} {SEP_NAMES.get(sep, sep)}-separated fields like the header ({sep.join(header)})"
    table = read_delimited(
        p,
        data,
        start=start,
        first_lineno=body_line,
        sep=sep,
        fields=header,
        kinds=kinds,
        labels=labels,
        expected=expected,
        quoted=True,
        infer=[mapping["time"]] if "time" in mapping else (),
    )
    time = None
    if "time" in mapping:
        time = _time_column(p, table.column(mapping["time"]), lambda r: row_line(data, start, body_line, r))
    rating = table.column(mapping["rating"]) if "rating" in mapping else None
    return make_table(table.column(mapping["user"]), table.column(mapping["item"]), time, rating)


def _read_parquet(path: Path, mapping: dict[str, str] | None) -> pd.DataFrame:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceFormatError(path, None, f"not a readable Parquet file ({exc})") from None
    mapping = _resolve_mapping(path, None, list(schema.names), mapping)
    table = pq.read_table(path, columns=list(dict.fromkeys(mapping.values())))
    if table.num_rows == 0:
        raise SourceFormatError(path, None, "file has no rows; expected one interaction per row")
    for key in ("user", "item", "time"):
        if key in mapping:
            col = table.column(mapping[key])
            if col.null_count:
                row = int(np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))[0])
                raise SourceFormatError(path, row + 1, f"empty {key} ({mapping[key]!r})", unit="row")
    check_ids(
        path,
        {f"{key} ({mapping[key]!r})": table.column(mapping[key]) for key in ("user", "item")},
        lambda r: r + 1,
        unit="row",
    )
    time = None
    if "time" in mapping:
        time = _time_column(path, table.column(mapping["time"]), lambda r: r + 1, unit="row")
    rating = None
    if "rating" in mapping:
        rating = pc.cast(table.column(mapping["rating"]), pa.float64())
    return make_table(strings(table.column(mapping["user"])), strings(table.column(mapping["item"])), time, rating)
