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
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import zlib
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

FORMATS = ("movielens", "amazon-json", "amazon-csv", "recbole", "seq-txt", "csv")
COLUMNS = ("user", "item", "timestamp", "rating")
MAPPING_KEYS = ("user", "item", "time", "rating")


class SourceFormatError(ValueError):
    """A raw input file does not match its declared format; the message names file, line and format."""

    def __init__(self, path: str | Path, line: int | None, problem: str, unit: str = "line"):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = self.path if line is None else f"{self.path} {unit} {line}"
        super().__init__(f"{where}: {problem}")


# ----------------------------------------------------------------------------- bytes and lines


def read_bytes(path: str | Path) -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic (whatever its name)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    raw = p.read_bytes()
    return _gunzip(p, raw) if raw[:2] == b"\x1f\x8b" else raw


def _gunzip(path: Path, raw: bytes) -> bytes:
    # zlib instead of gzip.GzipFile: on a truncated stream it still hands back everything before the
    # cut, so the error can name the line where the file stops.
    out: list[bytes] = []
    view = memoryview(raw)
    pos = 0
    while pos < len(raw):
        d = zlib.decompressobj(wbits=31)
        try:
            out.append(d.decompress(view[pos:]))
            out.append(d.flush())
        except zlib.error as exc:
            line = sum(c.count(b"\n") for c in out) + 1
            if not out and pos == 0:
                raise SourceFormatError(path, 1, f"not a valid gzip file ({exc})") from None
            raise SourceFormatError(path, line, f"corrupt gzip data ({exc}); download the file again") from None
        if not d.eof:
            line = sum(c.count(b"\n") for c in out) + 1
            raise SourceFormatError(
                path, line, "truncated gzip file (the compressed stream ends early); download the file again"
            )
        pos = len(raw) - len(d.unused_data)
        if not raw[pos:].strip(b"\x00"):  # trailing zero padding after the last member
            break
    return b"".join(out)


def _lines(data: bytes, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of each non-blank line."""
    for i, line in enumerate(data.decode(encoding, errors="replace").split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            yield i, line


def _first_line(path: Path, data: bytes, expected: str, encoding: str = "utf-8") -> tuple[int, str, int]:
    """Line number, text and byte offset just past the first non-blank line; empty files are an error."""
    pos = 0
    lineno = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        lineno += 1
        text = data[pos:end].decode(encoding, errors="replace").rstrip("\r")
        if text.strip():
            return lineno, text, min(end + 1, len(data))
        pos = end + 1
    raise SourceFormatError(path, 1, f"file is empty; expected {expected}")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ----------------------------------------------------------------------------- delimited text

_SEP_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "'|'", " ": "space"}


def _describe(sep: str, fields: Iterable[str]) -> str:
    fields = list(fields)
    joiner = "<TAB>" if sep == "\t" else sep
    name = _SEP_NAMES.get(sep, repr(sep))
    return f"{len(fields)} {name}-separated fields {joiner.join(fields)}"


def _check_value(kind: str, label: str, value: str) -> str | None:
    """Why `value` is not a valid `kind` (None when it is)."""
    if kind == "skip":
        return None
    if value == "":
        return None if kind == "float?" else f"empty {label}"
    if kind == "int":
        if not re.fullmatch(r"-?\d+", value):
            return f"{label} {value!r} is not an integer"
    elif kind in ("float", "float?"):
        try:
            float(value)
        except ValueError:
            return f"{label} {value!r} is not a number"
    return None


def _locate_bad_line(
    path: Path,
    data: bytes,
    start: int,
    first_lineno: int,
    sep: str,
    fields: list[str],
    kinds: list[str],
    labels: list[str],
    expected: str,
    quoted: bool,
) -> None:
    """Raise SourceFormatError for the first line that breaks the layout (returns if none does)."""
    n = len(fields)
    for i, line in _lines(data[start:]):
        lineno = first_lineno + i - 1
        if len(sep) == 1 and quoted:
            parts = next(csv.reader([line], delimiter=sep))
        else:
            parts = line.split(sep)
        if len(parts) != n:
            hint = " (wrong delimiter?)" if len(parts) == 1 else ""
            raise SourceFormatError(path, lineno, f"expected {expected}, got {_plural(len(parts), 'field')}{hint}")
        for kind, label, value in zip(kinds, labels, parts):
            problem = _check_value(kind, label, value)
            if problem:
                raise SourceFormatError(path, lineno, f"{problem}; expected {expected}")


_ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "float?": pa.float64(), "str": pa.string()}


def _read_delimited(
    path: Path,
    data: bytes,
    *,
    start: int,
    first_lineno: int,
    sep: str,
    fields: list[str],
    kinds: list[str],
    labels: list[str] | None = None,
    expected: str | None = None,
    quoted: bool = False,
    infer: Iterable[str] = (),
) -> pa.Table:
    """Parse `data[start:]` as `sep`-separated columns named `fields` (kinds: int, float, float?, str,
    skip; `infer` columns keep pyarrow's inferred type). Returns the non-skipped columns."""
    labels = labels or fields
    expected = expected or _describe(sep, labels)
    infer = set(infer)
    wanted = [f for f, k in zip(fields, kinds) if k != "skip" or f in infer]
    if len(sep) == 2 and sep[0] == sep[1]:
        # A doubled one-character separator ("::") is parsed as single ':' with empty gap columns in
        # between, which pyarrow handles natively; the gaps must be empty or the line is malformed.
        names: list[str] = []
        for i, f in enumerate(fields):
            if i:
                names.append(f"__gap{i}")
            names.append(f)
        delimiter = sep[0]
    else:
        names, delimiter = list(fields), sep
    types = {f: _ARROW_TYPES[k] for f, k in zip(fields, kinds) if k != "skip" and f not in infer}
    gaps = [n for n in names if n.startswith("__gap")]
    types.update({g: pa.string() for g in gaps})
    body = pa.py_buffer(data).slice(start)
    try:
        table = pacsv.read_csv(
            pa.BufferReader(body),
            read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if quoted else False),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                include_columns=wanted + gaps,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        ok = all(
            table.column(f).null_count == 0
            for f, k in zip(fields, kinds)
            if k not in ("skip", "float?") and f in table.column_names
        ) and all(table.column(g).null_count == table.num_rows for g in gaps)
        failure = None if ok else "empty or malformed fields"
    except pa.ArrowInvalid as exc:
        failure = str(exc)
    if failure is not None:
        _locate_bad_line(path, data, start, first_lineno, sep, fields, kinds, labels, expected, quoted)
        raise SourceFormatError(path, None, f"could not parse the file ({failure}); expected {expected}")
    if table.num_rows == 0:
        raise SourceFormatError(path, first_lineno, f"no data lines; expected {expected}")
    return table.select(wanted)


def _row_line(data: bytes, start: int, first_lineno: int, row: int) -> int:
    """Line number of the `row`-th (0-based) non-blank line after `start`."""
    for k, (i, _) in enumerate(_lines(data[start:])):
        if k == row:
            return first_lineno + i - 1
    return first_lineno


# ----------------------------------------------------------------------------- output table


def _time_to_int64(values: np.ndarray) -> np.ndarray:
    """Integer times as they are; fractional times become their rank (order is what matters)."""
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.size == 0 or (np.all(np.floor(values) == values) and np.abs(values).max() < 2**62):
        return values.astype(np.int64)
    return np.unique(values, return_inverse=True)[1].astype(np.int64).reshape(-1)


def _strings(arr: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    return arr if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) else pc.cast(arr, pa.string())


def make_table(user, item, timestamp=None, rating=None) -> pd.DataFrame:
    """The normalised interaction table from column values (timestamp defaults to row order)."""
    users = pd.Series(pd.array(_as_str(user), dtype="str"), name="user")
    n = len(users)
    ts = np.arange(n, dtype=np.int64) if timestamp is None else _time_to_int64(_as_numpy(timestamp))
    rt = np.full(n, np.nan) if rating is None else _as_numpy(rating).astype(np.float64)
    return pd.DataFrame(
        {
            "user": users,
            "item": pd.array(_as_str(item), dtype="str"),
            "timestamp": ts,
            "rating": rt,
        }
    )


def _as_str(values):
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return _strings(values).to_pandas()
    return [str(v) for v in values] if not isinstance(values, (pd.Series, np.ndarray)) else np.asarray(values, dtype=str)


def _as_numpy(values) -> np.ndarray:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = values.to_numpy() if isinstance(values, pa.ChunkedArray) else values.to_numpy(zero_copy_only=False)
    return np.asarray(values)


# ----------------------------------------------------------------------------- MovieLens

_ML_EXPECT_DAT = "4 '::'-separated fields user::item::rating::timestamp (MovieLens ratings.dat)"
_ML_EXPECT_TAB = "4 tab-separated fields user<TAB>item<TAB>rating<TAB>timestamp (MovieLens u.data)"
_ML_CSV_HEADER = ("userId", "movieId", "rating", "timestamp")
_ML_EXPECT_CSV = "a header userId,movieId,rating,timestamp and comma-separated rows (MovieLens ratings.csv)"
_ML_LABELS = ["user id", "item id", "rating", "timestamp"]
_ML_KINDS = ["int", "int", "float", "int"]


def _find_in_dir(path: Path, names: Iterable[str], what: str) -> Path:
    if not path.is_dir():
        return path
    for name in names:
        for cand in (path / name, path / f"{name}.gz"):
            if cand.is_file():
                return cand
    raise FileNotFoundError(f"{path}: no {what} found (looked for {', '.join(names)})")


def resolve_input(fmt: str, path: str | Path) -> Path:
    """The file a format reads from `path` (a MovieLens directory resolves to its ratings file)."""
    _check_format(fmt)
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    if fmt == "movielens":
        return _find_in_dir(p, ("ratings.dat", "ratings.csv", "u.data"), "MovieLens ratings file")
    if p.is_dir():
        raise IsADirectoryError(f"{p}: format {fmt!r} reads one file; pass the file, not a directory")
    return p


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
    p = resolve_input("movielens", path)
    data = read_bytes(p)
    lineno, first, after = _first_line(p, data, "MovieLens ratings")
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
        table = _read_delimited(p, data, start=after, first_lineno=lineno + 1, sep=",", fields=header,
                                kinds=kinds, labels=labels, expected=_ML_EXPECT_CSV)
        cols = ("userId", "movieId", "timestamp", "rating")
    else:
        sep, expected = ("::", _ML_EXPECT_DAT) if layout == "dat" else ("\t", _ML_EXPECT_TAB)
        fields = ["user", "item", "rating", "timestamp"]
        table = _read_delimited(p, data, start=0, first_lineno=1, sep=sep, fields=fields, kinds=_ML_KINDS,
                                labels=_ML_LABELS, expected=expected)
        cols = ("user", "item", "timestamp", "rating")
    return make_table(*(table.column(c) for c in cols))


# ----------------------------------------------------------------------------- Amazon reviews

_AMAZON_EXPECT = (
    "one review object per line with keys reviewerID, asin, overall, unixReviewTime (Amazon 2014/2018) "
    "or user_id, parent_asin, rating, timestamp (Amazon 2023)"
)
_AMAZON_CSV_EXPECT = "4 comma-separated fields user,item,rating,timestamp without a header (Amazon ratings CSV)"


def _parse_record(path: Path, lineno: int, line: str, expected: str) -> dict:
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
        path, lineno, f"no 'reviewerID' or 'user_id' key (keys: {', '.join(map(str, record))}); expected {_AMAZON_EXPECT}"
    )


def read_amazon_json(path: str | Path) -> pd.DataFrame:
    """Amazon review dumps, JSON lines (optionally gzipped): 2014 5-core (also its Python-literal
    variant), 2018 (same keys) and 2023 (user_id, parent_asin else asin, rating, timestamp in ms)."""
    p = resolve_input("amazon-json", path)
    data = read_bytes(p)
    lineno, first, _ = _first_line(p, data, _AMAZON_EXPECT)
    keys = _amazon_keys(p, lineno, _parse_record(p, lineno, first, _AMAZON_EXPECT))
    table = None
    try:
        json.loads(first)
        schema = pa.schema([(keys[0], pa.string()), (keys[1], pa.string()), (keys[2], pa.float64()),
                            (keys[3], pa.int64())])
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
        return make_table(*(table.column(k) for k in (keys[0], keys[1], keys[3], keys[2])))
    return _read_amazon_json_lines(p, data, keys)


def _read_amazon_json_lines(path: Path, data: bytes, keys: tuple[str, str, str, str]) -> pd.DataFrame:
    users: list[str] = []
    items: list[str] = []
    times: list[int] = []
    ratings: list[float] = []
    ukey, ikey, rkey, tkey = keys
    for lineno, line in _lines(data):
        rec = _parse_record(path, lineno, line, _AMAZON_EXPECT)
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
    return make_table(users, items, np.asarray(times, dtype=np.int64), np.asarray(ratings, dtype=np.float64))


def read_amazon_csv(path: str | Path) -> pd.DataFrame:
    """Amazon ratings-only CSV (2014 layout): user,item,rating,timestamp, no header."""
    p = resolve_input("amazon-csv", path)
    data = read_bytes(p)
    _first_line(p, data, _AMAZON_CSV_EXPECT)
    table = _read_delimited(p, data, start=0, first_lineno=1, sep=",", fields=["user", "item", "rating", "timestamp"],
                            kinds=["str", "str", "float", "int"], labels=["user", "item", "rating", "timestamp"],
                            expected=_AMAZON_CSV_EXPECT, quoted=True)
    return make_table(*(table.column(c) for c in ("user", "item", "timestamp", "rating")))


# ----------------------------------------------------------------------------- RecBole atomic files

_RECBOLE_TYPES = {"token", "token_seq", "float", "float_seq"}
_RECBOLE_EXPECT = "a RecBole .inter file: tab-separated header such as user_id:token<TAB>item_id:token<TAB>rating:float<TAB>timestamp:float"


def _recbole_header(path: Path, lineno: int, line: str, expected: str) -> tuple[list[str], list[str]]:
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
    p = resolve_input("recbole", path)
    data = read_bytes(p)
    lineno, first, after = _first_line(p, data, _RECBOLE_EXPECT)
    names, types = _recbole_header(p, lineno, first, _RECBOLE_EXPECT)
    for need in ("user_id", "item_id"):
        if need not in names:
            raise SourceFormatError(p, lineno, f"missing column '{need}:token' in header; expected {_RECBOLE_EXPECT}")
    wanted = {"user_id": "str", "item_id": "str", "rating": "float", "timestamp": "float"}
    kinds = [wanted.get(n, "skip") if t in ("token", "float") else "skip" for n, t in zip(names, types)]
    labels = [f"{n}:{t}" for n, t in zip(names, types)]
    expected = f"{len(names)} tab-separated fields {'<TAB>'.join(labels)} (RecBole .inter)"
    table = _read_delimited(p, data, start=after, first_lineno=lineno + 1, sep="\t", fields=names, kinds=kinds,
                            labels=labels, expected=expected)
    cols = {n: table.column(n) for n in table.column_names}
    return make_table(cols["user_id"], cols["item_id"], cols.get("timestamp"), cols.get("rating"))


# ----------------------------------------------------------------------------- sequence text

_SEQ_EXPECT = "one user per line: 'user item item ...' separated by spaces, items in chronological order"


def read_seq_txt(path: str | Path) -> pd.DataFrame:
    """Sequence text (SASRec/S3-Rec style): `user item item ...` per line, whitespace-separated.
    Time is the running position in the file, so a user split over several lines (e.g. the
    one-interaction-per-line `user item` files) keeps its order."""
    p = resolve_input("seq-txt", path)
    data = read_bytes(p)
    _first_line(p, data, _SEQ_EXPECT)
    users: list[str] = []
    counts: list[int] = []
    items: list[str] = []
    for lineno, line in _lines(data):
        parts = line.split()
        if len(parts) < 2:
            hint = " (wrong delimiter?)" if any(c in line for c in ",;|") else ""
            raise SourceFormatError(p, lineno, f"expected {_SEQ_EXPECT}, got {_plural(len(parts), 'field')}{hint}")
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


def _resolve_mapping(path: Path, line: int | None, header: list[str], columns: dict[str, str] | None,
                     unit: str = "line") -> dict[str, str]:
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


def _sniff_delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _is_parquet(path: Path) -> bool:
    if path.suffix.lower() in (".parquet", ".pq"):
        return True
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


def _time_column(path: Path, arr: pa.ChunkedArray, row_line) -> np.ndarray:
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return _time_to_int64(arr.to_numpy())
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return _time_to_int64(pc.cast(pc.cast(arr, pa.timestamp("ns")), pa.int64()).to_numpy())
    values = pd.Series(arr.to_pandas())
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        raise SourceFormatError(
            path, row_line(int(bad[0])),
            f"time {values.iloc[bad[0]]!r} is neither a number nor a date; expected a numeric timestamp or a date string",
        )
    return parsed.to_numpy().astype("datetime64[ns]").astype(np.int64)


def read_csv(path: str | Path, columns: Mapping[str, str] | str | None = None) -> pd.DataFrame:
    """Generic CSV (delimiter sniffed from the header: comma, tab, semicolon or '|') or Parquet with a
    column mapping (see `parse_columns`); without one, common names (user_id, item_id, timestamp...)
    are looked up. A mapping of integer positions reads a CSV without header."""
    p = resolve_input("csv", path)
    mapping = parse_columns(columns)
    if _is_parquet(p):
        return _read_parquet(p, mapping)
    data = read_bytes(p)
    lineno, first, after = _first_line(p, data, "a CSV file with a header row")
    sep = _sniff_delimiter(first)
    positional = bool(mapping) and all(v.isdigit() for v in mapping.values())
    if positional:
        header = [str(i) for i in range(len(next(csv.reader([first], delimiter=sep))))]
        start, body_line = 0, 1
    else:
        header = [h.strip() for h in next(csv.reader([first], delimiter=sep))]
        start, body_line = after, lineno + 1
    mapping = _resolve_mapping(p, lineno, header, mapping)
    role = {col: key for key, col in mapping.items()}
    kind_of = {"user": "str", "item": "str", "time": "str", "rating": "float?"}
    kinds = [kind_of[role[h]] if h in role else "skip" for h in header]
    labels = [f"{role[h]} column {h!r}" if h in role else h for h in header]
    expected = f"{len(header)} {_SEP_NAMES.get(sep, sep)}-separated fields like the header ({sep.join(header)})"
    table = _read_delimited(p, data, start=start, first_lineno=body_line, sep=sep, fields=header, kinds=kinds,
                            labels=labels, expected=expected, quoted=True,
                            infer=[mapping["time"]] if "time" in mapping else ())
    time = None
    if "time" in mapping:
        time = _time_column(p, table.column(mapping["time"]), lambda r: _row_line(data, start, body_line, r))
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
    time = None
    if "time" in mapping:
        time = _time_column(path, table.column(mapping["time"]), lambda r: r + 1)
    rating = None
    if "rating" in mapping:
        rating = pc.cast(table.column(mapping["rating"]), pa.float64())
    return make_table(_strings(table.column(mapping["user"])), _strings(table.column(mapping["item"])), time, rating)


# ----------------------------------------------------------------------------- dispatch


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def read_interactions(fmt: str, path: str | Path, *, columns: Mapping[str, str] | str | None = None) -> pd.DataFrame:
    """Read an interaction log of format `fmt` (one of FORMATS) into the normalised table."""
    _check_format(fmt)
    if columns and fmt != "csv":
        raise ValueError(f"a column mapping only applies to --format csv, not {fmt!r}")
    if fmt == "movielens":
        return read_movielens(path)
    if fmt == "amazon-json":
        return read_amazon_json(path)
    if fmt == "amazon-csv":
        return read_amazon_csv(path)
    if fmt == "recbole":
        return read_recbole(path)
    if fmt == "seq-txt":
        return read_seq_txt(path)
    return read_csv(path, columns)


# ----------------------------------------------------------------------------- item features

_ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                  "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
                  "Thriller", "War", "Western")
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
    p = _find_in_dir(Path(path), ("movies.dat", "movies.csv", "u.item"), "MovieLens movie file")
    data = read_bytes(p)
    name = p.name.lower().removesuffix(".gz")
    feats: ItemFeatures = {"genre": {}, "year": {}, "title": {}}

    def add(movie: str, title: str, genres: list[str]) -> None:
        words, year = _title_tokens(title)
        feats["genre"][movie], feats["year"][movie], feats["title"][movie] = genres, year, words

    if name.endswith(".csv"):
        expected = "a header movieId,title,genres and comma-separated rows (MovieLens movies.csv)"
        lineno, first, _ = _first_line(p, data, expected)
        if [h.strip() for h in first.split(",")][:3] != ["movieId", "title", "genres"]:
            raise SourceFormatError(p, lineno, f"unexpected header {first!r}; expected {expected}")
        rows = csv.reader(data.decode("utf-8", errors="replace").splitlines()[lineno:])
        for k, row in enumerate(rows, start=lineno + 1):
            if not row:
                continue
            if len(row) != 3 or not row[0].isdigit():
                raise SourceFormatError(p, k, f"expected 3 fields movieId,title,genres, got {row!r}; expected {expected}")
            add(row[0], row[1], _genres(row[2]))
        return feats
    item_format = name.endswith(".item")
    sep, n = ("|", 24) if item_format else ("::", 3)
    expected = (
        "24 '|'-separated fields id|title|release date|video date|url|19 genre flags (MovieLens u.item)"
        if item_format else "3 '::'-separated fields MovieID::Title (Year)::Genre|Genre (MovieLens movies.dat)"
    )
    _first_line(p, data, expected, encoding="latin-1")
    for lineno, line in _lines(data, encoding="latin-1"):
        parts = line.split(sep)
        if len(parts) != n:
            hint = " (wrong delimiter?)" if len(parts) == 1 else ""
            raise SourceFormatError(p, lineno, f"expected {expected}, got {_plural(len(parts), 'field')}{hint}")
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
    p = resolve_input("amazon-json", path)
    data = read_bytes(p)
    _first_line(p, data, _META_EXPECT)
    wanted = set(items) if items is not None else None
    feats: ItemFeatures = {"category": {}, "brand": {}}
    for lineno, line in _lines(data):
        if wanted is not None:
            ids = _ASIN_KEY.findall(line)
            if ids and not any(i in wanted for i in ids):
                continue
        rec = _parse_record(p, lineno, line, _META_EXPECT)
        asin = rec.get("parent_asin") or rec.get("asin")
        if not asin:
            raise SourceFormatError(p, lineno, f"missing key 'asin'; expected {_META_EXPECT}")
        asin = str(asin)
        if wanted is not None and asin not in wanted:
            continue
        cats = _clean(_flatten(rec.get("categories")) + _flatten(rec.get("category")))
        details = rec.get("details") if isinstance(rec.get("details"), dict) else {}
        brand = rec.get("brand") or details.get("Brand") or rec.get("store")
        feats["category"][asin] = cats
        feats["brand"][asin] = _clean([brand]) if isinstance(brand, str) else []
    return feats


def read_recbole_items(path: str | Path, items: Iterable[str] | None = None) -> ItemFeatures:
    """RecBole .item file: every token field becomes a one-token feature, every token_seq field a
    space-separated token list; float fields are not categorical and are left out."""
    p = resolve_input("recbole", path)
    data = read_bytes(p)
    expected = "a RecBole .item file: tab-separated header such as item_id:token<TAB>genre:token_seq"
    lineno, first, after = _first_line(p, data, expected)
    names, types = _recbole_header(p, lineno, first, expected)
    if "item_id" not in names:
        raise SourceFormatError(p, lineno, f"missing column 'item_id:token' in header; expected {expected}")
    key = names.index("item_id")
    cols = [(i, n, t) for i, (n, t) in enumerate(zip(names, types)) if i != key and t in ("token", "token_seq")]
    feats: ItemFeatures = {n: {} for _, n, _ in cols}
    wanted = set(items) if items is not None else None
    for k, line in _lines(data[after:]):
        parts = line.split("\t")
        if len(parts) != len(names):
            raise SourceFormatError(p, lineno + k, f"expected {_plural(len(names), 'field')} like the header, "
                                                   f"got {_plural(len(parts), 'field')}")
        item = parts[key]
        if wanted is not None and item not in wanted:
            continue
        for i, n, t in cols:
            feats[n][item] = _clean(parts[i].split(" ") if t == "token_seq" else [parts[i]])
    return feats


def read_table_items(path: str | Path, items: Iterable[str] | None = None, item_column: str | None = None) -> ItemFeatures:
    """A generic item table (CSV with header, or Parquet): the item column (`item_column`, else 'item',
    'item_id' or the first column) plus one feature per other column; '|' separates several tokens."""
    p = Path(path)
    if _is_parquet(p):
        frame = pq.read_table(p).to_pandas()
    else:
        data = read_bytes(p)
        _, first, _ = _first_line(p, data, "an item table with a header row")
        frame = pd.read_csv(io.BytesIO(data), sep=_sniff_delimiter(first), dtype=str, keep_default_na=False)
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


def read_item_features(fmt: str, path: str | Path, *, items: Iterable[str] | None = None,
                       item_column: str | None = None) -> ItemFeatures:
    """Item side features for an interaction format: MovieLens movie files, Amazon metadata, RecBole
    .item files, or (csv, seq-txt) a generic item table. `items` restricts to those original ids."""
    _check_format(fmt)
    if fmt == "movielens":
        feats = read_movielens_items(path)
        if items is not None:
            keep = set(items)
            feats = {n: {i: t for i, t in f.items() if i in keep} for n, f in feats.items()}
        return feats
    if fmt in ("amazon-json", "amazon-csv"):
        return read_amazon_items(path, items)
    if fmt == "recbole":
        return read_recbole_items(path, items)
    return read_table_items(path, items, item_column)


def find_item_file(fmt: str, input_path: str | Path) -> Path | None:
    """The item file that sits beside a MovieLens ratings file or in its directory, if any."""
    if fmt != "movielens":
        return None
    p = Path(input_path)
    folder = p if p.is_dir() else p.parent
    for name in ("movies.dat", "movies.csv", "u.item"):
        for cand in (folder / name, folder / f"{name}.gz"):
            if cand.is_file():
                return cand
    return None
