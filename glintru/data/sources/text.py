"""What every reader shares: the error type, bytes and lines (gzip by content), delimited text
parsed by pyarrow with a line-by-line fallback that names the first bad line, and the output table."""

from __future__ import annotations

import csv
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

COLUMNS = ("user", "item", "timestamp", "rating")
MAPPING_KEYS = ("user", "item", "time", "rating")
# Files a MovieLens directory is searched for, in order (each also as .gz).
MOVIELENS_RATINGS = ("ratings.dat", "ratings.csv", "u.data")
MOVIELENS_MOVIES = ("movies.dat", "movies.csv", "u.item")


class SourceFormatError(ValueError):
    """A raw input file does not match its declared format; the message names file, line and format."""

    def __init__(self, path: str | Path, line: int | None, problem: str, unit: str = "line"):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = self.path if line is None else f"{self.path} {unit} {line}"
        super().__init__(f"{where}: {problem}")


def resolve_file(path: str | Path, fmt: str, dir_names: Iterable[str] = (), what: str = "") -> Path:
    """The one file a reader reads: `path` itself, or (for formats that accept a directory, such as
    MovieLens) the first of `dir_names` found inside it."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    if not p.is_dir():
        return p
    names = tuple(dir_names)
    if not names:
        raise IsADirectoryError(f"{p}: format {fmt!r} reads one file; pass the file, not a directory")
    for name in names:
        for cand in (p / name, p / f"{name}.gz"):
            if cand.is_file():
                return cand
    raise FileNotFoundError(f"{p}: no {what} found (looked for {', '.join(names)})")


def find_beside(path: str | Path, names: Iterable[str]) -> Path | None:
    """The first of `names` (or its .gz) in `path`'s directory (or in `path` if it is one)."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    for name in names:
        for cand in (folder / name, folder / f"{name}.gz"):
            if cand.is_file():
                return cand
    return None


# ----------------------------------------------------------------------------- bytes and lines


UTF8_BOM = b"\xef\xbb\xbf"
# C0 control characters but tab, line feed and carriage return, and DEL: no text log holds them, and
# read as ids they would make new users and items out of a binary, damaged or UTF-16 file
_CONTROL = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_NOT_CONTROL = bytes(b for b in range(256) if b not in _CONTROL)
CONTROL_PATTERN = "[" + "".join(f"\\x{b:02x}" for b in _CONTROL) + "]"  # the same, for regex engines


def read_bytes(path: str | Path) -> bytes:
    """The file's text: gunzipped when it starts with the gzip magic (whatever its name), without a
    UTF-8 byte-order mark; a control character (NUL, ...) is a SourceFormatError naming its line."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    raw = p.read_bytes()
    data = _gunzip(p, raw) if raw[:2] == b"\x1f\x8b" else raw
    _check_text(p, data)
    return data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data


def control_name(char: str | int) -> str:
    code = char if isinstance(char, int) else ord(char)
    return "NUL" if code == 0 else f"\\x{code:02x}"


def _check_text(path: Path, data: bytes) -> None:
    found = data.translate(None, _NOT_CONTROL)  # a C-speed scan; empty for a text file
    if not found:
        return
    pos = min(data.find(bytes([c])) for c in set(found))
    hint = "UTF-16 text; save it as UTF-8" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "a binary or damaged file?"
    raise SourceFormatError(
        path,
        data.count(b"\n", 0, pos) + 1,
        f"control character {control_name(data[pos])} in the text ({hint}); expected plain text",
    )


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


def lines(data: bytes, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of each non-blank line."""
    for i, line in enumerate(data.decode(encoding, errors="replace").split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            yield i, line


def first_line(path: Path, data: bytes, expected: str, encoding: str = "utf-8") -> tuple[int, str, int]:
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


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ----------------------------------------------------------------------------- delimited text

SEP_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "'|'", " ": "space"}


def _describe(sep: str, fields: Iterable[str]) -> str:
    fields = list(fields)
    joiner = "<TAB>" if sep == "\t" else sep
    name = SEP_NAMES.get(sep, repr(sep))
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


def csv_fields(path: Path, lineno: int, line: str, sep: str, expected: str) -> list[str]:
    """One line split as a CSV row (quotes honoured); a line the csv module refuses, such as one with
    a field past its size limit, is a SourceFormatError naming it."""
    try:
        return next(csv.reader([line], delimiter=sep))
    except csv.Error as exc:
        limit = csv.field_size_limit()
        problem = f"a field longer than {limit:,} characters" if len(line) > limit else f"unreadable ({exc})"
        raise SourceFormatError(path, lineno, f"{problem}; expected {expected}") from None


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
    for i, line in lines(data[start:]):
        lineno = first_lineno + i - 1
        if len(sep) == 1 and quoted:
            parts = csv_fields(path, lineno, line, sep, expected)
        else:
            parts = line.split(sep)
        if len(parts) != n:
            hint = " (wrong delimiter?)" if len(parts) == 1 else ""
            raise SourceFormatError(path, lineno, f"expected {expected}, got {plural(len(parts), 'field')}{hint}")
        for kind, label, value in zip(kinds, labels, parts):
            problem = _check_value(kind, label, value)
            if problem:
                raise SourceFormatError(path, lineno, f"{problem}; expected {expected}")


_ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "float?": pa.float64(), "str": pa.string()}


def read_delimited(
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
    if quoted:
        # a quote never closed swallows the lines after it into one field; no id spans lines
        for f, k, label in zip(fields, kinds, labels):
            column = table.column(f)
            if k == "skip" or not pa.types.is_string(column.type):
                continue
            row = pc.index(pc.match_substring_regex(column, "[\r\n]"), True).as_py()
            if row >= 0:
                raise SourceFormatError(
                    path,
                    row_line(data, start, first_lineno, row),
                    f"{label} runs past the end of the line (a quote '\"' left open?); expected {expected}",
                )
    return table.select(wanted)


def row_line(data: bytes, start: int, first_lineno: int, row: int) -> int:
    """Line number of the `row`-th (0-based) non-blank line after `start`."""
    for k, (i, _) in enumerate(lines(data[start:])):
        if k == row:
            return first_lineno + i - 1
    return first_lineno


def check_ids(
    path: Path, columns: Mapping[str, pa.Array | pa.ChunkedArray], line_of: Callable[[int], int], unit: str = "line"
) -> None:
    """SourceFormatError for the first text id holding a control character: ids decoded from JSON
    escapes or read from Parquet, which the raw-text check of read_bytes does not see."""
    for label, values in columns.items():
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            continue  # numbers and the like hold no control characters
        row = pc.index(pc.match_substring_regex(values, CONTROL_PATTERN), True).as_py()
        if row >= 0:
            value = str(values[row].as_py())
            char = next(c for c in value if c.encode() in _CONTROL)
            raise SourceFormatError(
                path,
                line_of(row),
                f"{label} {value!r} holds control character {control_name(char)}, which no id has; is the file damaged?",
                unit,
            )


def check_finite_times(
    path: Path, values: np.ndarray, line_of: Callable[[int], int], label: str, unit: str = "line"
) -> None:
    """SourceFormatError for the first time that is NaN or infinite (a float column reads 'nan' and
    'inf' as numbers, which no order of interactions can use)."""
    if values.dtype.kind != "f":
        return
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise SourceFormatError(
            path, line_of(int(bad[0])), f"{label} {values[bad[0]]} is not a finite number; expected a time", unit
        )


# ----------------------------------------------------------------------------- output table


def time_to_int64(values: np.ndarray) -> np.ndarray:
    """Integer times as they are; fractional times become their rank (order is what matters)."""
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.size == 0 or (np.all(np.floor(values) == values) and np.abs(values).max() < 2**62):
        return values.astype(np.int64)
    return np.unique(values, return_inverse=True)[1].astype(np.int64).reshape(-1)


def strings(arr: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    return arr if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) else pc.cast(arr, pa.string())


def make_table(user, item, timestamp=None, rating=None) -> pd.DataFrame:
    """The normalised interaction table from column values (timestamp defaults to row order)."""
    users = pd.Series(pd.array(_as_str(user), dtype="str"), name="user")
    n = len(users)
    ts = np.arange(n, dtype=np.int64) if timestamp is None else time_to_int64(_as_numpy(timestamp))
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
        return strings(values).to_pandas()
    return (
        [str(v) for v in values] if not isinstance(values, (pd.Series, np.ndarray)) else np.asarray(values, dtype=str)
    )


def _as_numpy(values) -> np.ndarray:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = values.to_numpy() if isinstance(values, pa.ChunkedArray) else values.to_numpy(zero_copy_only=False)
    return np.asarray(values)
