"""Properties of the readers, the prepare step and the dataset loader on random inputs: random logs,
random bytes and random edits end in a dataset or in one of glintru's own errors, never in a traceback
or a silently different dataset."""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glintru.data.dataset import DatasetError, compute_stats, load_dataset, write_prepared
from glintru.data.prepare import prepare
from glintru.data.sources import FORMATS, SourceFormatError, read_interactions

# quick and the same on every run: a failure found once is found again in CI
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Row = tuple[str, str, int, float]  # user, item, time, rating


def _csv_line(fields: list[str], sep: str = ",") -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=sep, lineterminator="\n").writerow(fields)
    return out.getvalue()


def _movielens(rows: list[Row]) -> str:
    return "".join(f"{u}::{i}::{r:g}::{t}\n" for u, i, t, r in rows)


def _amazon_json(rows: list[Row]) -> str:
    return "".join(
        json.dumps({"reviewerID": u, "asin": i, "overall": r, "unixReviewTime": t}) + "\n" for u, i, t, r in rows
    )


def _amazon_csv(rows: list[Row]) -> str:
    return "".join(_csv_line([u, i, f"{r:g}", str(t)]) for u, i, t, r in rows)


def _recbole(rows: list[Row]) -> str:
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    return header + "".join(f"{u}\t{i}\t{r:g}\t{t}\n" for u, i, t, r in rows)


def _seq_txt(rows: list[Row]) -> str:
    return "".join(f"{u} {i}\n" for u, i, _, _ in rows)  # one interaction per line, time = position


def _csv(rows: list[Row]) -> str:
    return "user,item,timestamp,rating\n" + "".join(_csv_line([u, i, str(t), f"{r:g}"]) for u, i, t, r in rows)


# format -> (file name, writer); the readers see these as a user's files
WRITERS: dict[str, tuple[str, Callable[[list[Row]], str]]] = {
    "movielens": ("ratings.dat", _movielens),
    "amazon-json": ("reviews.json", _amazon_json),
    "amazon-csv": ("ratings.csv", _amazon_csv),
    "recbole": ("log.inter", _recbole),
    "seq-txt": ("log.txt", _seq_txt),
    "csv": ("log.csv", _csv),
}


def test_every_format_has_a_writer():
    assert set(WRITERS) == set(FORMATS)


# ids every format can carry (MovieLens needs integers); few users, so that most have the three
# interactions a prepared user needs
users = st.integers(min_value=1, max_value=3).map(str)
items = st.integers(min_value=1, max_value=8).map(str)
rows = st.lists(
    st.tuples(users, items, st.integers(min_value=0, max_value=10**10), st.sampled_from([1.0, 2.5, 4.0, 5.0])),
    min_size=1,
    max_size=40,
)
# anything a text field may hold, separators, quotes, line ends and control characters included
wild = st.one_of(items, st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=4))
wild_rows = st.lists(
    st.tuples(wild, wild, st.integers(min_value=-(2**63), max_value=2**63), st.floats(allow_nan=True)),
    min_size=0,
    max_size=12,
)


def _own_error(e: Exception) -> bool:
    """glintru's own errors: SourceFormatError and DatasetError, or a plain ValueError it raised
    (e.g. no interactions left after filtering); never one leaking from pyarrow, json or codecs."""
    return isinstance(e, (SourceFormatError, DatasetError)) or type(e) is ValueError


def _prepare_or_error(fmt: str, path: Path, out: Path):
    """The prepared dataset, or None after one of glintru's own errors (asserted), naming the file
    when it is about the file."""
    try:
        prepare(fmt, path, out)
    except Exception as e:
        assert _own_error(e), f"{type(e).__name__}: {e}"
        if isinstance(e, SourceFormatError):
            assert str(e).startswith(str(path)), e
        assert not out.exists()
        return None
    return load_dataset(out)


def _assert_counts_match_tables(ds) -> None:
    lengths = np.diff(ds.sequences.column("items").combine_chunks().offsets.to_numpy())
    values = ds.values
    assert {k: ds.meta["stats"][k] for k in ("users", "items", "interactions")} == {
        "users": ds.sequences.num_rows,
        "items": ds.items.num_rows - 1,
        "interactions": int(lengths.sum()),
    }
    assert ds.meta["stats"] == compute_stats(lengths, ds.n_items)
    assert values.min() >= 1 and values.max() <= ds.n_items
    assert ds.popularity.sum() == values.size and lengths.min() >= 3


@PROPERTY
@given(fmt=st.sampled_from(FORMATS), log=rows)
def test_a_valid_log_reads_back_its_rows_and_prepares_to_consistent_counts(fmt, log):
    name, write = WRITERS[fmt]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(write(log))
        table = read_interactions(fmt, path)
        assert list(zip(table["user"], table["item"])) == [(u, i) for u, i, _, _ in log]
        ds = _prepare_or_error(fmt, path, Path(tmp) / "out")
        if ds is None:
            return
        _assert_counts_match_tables(ds)
        # the same interactions, remapped: each user's first interaction with each item, in time
        # order (ties in file order; sequence text has no time but the order of its lines), and
        # every user with at least three of them
        expected = {}
        for user in dict.fromkeys(u for u, _, _, _ in log):
            mine = sorted((k if fmt == "seq-txt" else t, k, i) for k, (u, i, t, _) in enumerate(log) if u == user)
            firsts = list(dict.fromkeys(i for _, _, i in mine))
            if len(firsts) >= 3:
                expected[user] = firsts
        item_ids = ds.items.column("original_id").to_pylist()
        held = {
            user: [item_ids[i] for i in ds.sequence(u)]
            for u, user in enumerate(ds.sequences.column("original_id").to_pylist())
        }
        assert held == expected


@PROPERTY
@given(fmt=st.sampled_from(FORMATS), log=wild_rows)
def test_a_wild_log_prepares_or_fails_with_one_clear_error(fmt, log):
    name, write = WRITERS[fmt]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(write([(u, i, t, r) for u, i, t, r in log]))
        ds = _prepare_or_error(fmt, path, Path(tmp) / "out")
        if ds is not None:
            _assert_counts_match_tables(ds)
            # no id came from a control character (NUL read as part of a new user or item)
            for column in (ds.sequences.column("original_id"), ds.items.column("original_id")):
                assert not any(c < " " and c not in "\t" for v in column.to_pylist() for c in v)


@PROPERTY
@given(fmt=st.sampled_from(FORMATS), data=st.binary(max_size=200), gzipped=st.booleans())
def test_random_bytes_never_raise_a_traceback(fmt, data, gzipped):
    import gzip

    name, _ = WRITERS[fmt]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(gzip.compress(data) if gzipped else data)
        ds = _prepare_or_error(fmt, path, Path(tmp) / "out")
        if ds is not None:
            _assert_counts_match_tables(ds)


@PROPERTY
@given(
    fmt=st.sampled_from(FORMATS),
    log=rows,
    where=st.tuples(st.integers(min_value=0), st.booleans()),
    char=st.sampled_from(["\x00", "\x01", "\x1b", "\x7f", "\x0c"]),
)
def test_a_control_character_in_an_id_is_refused_naming_its_line(fmt, log, where, char):
    name, write = WRITERS[fmt]
    row, in_item = where[0] % len(log), where[1]
    u, i, t, r = log[row]
    bad = [*log[:row], (u, i + char, t, r) if in_item else (u + char, i, t, r), *log[row + 1 :]]
    line = row + 1 + (fmt in ("recbole", "csv"))  # below the header
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(write(bad))
        with pytest.raises(SourceFormatError, match=rf"line {line}: .*control character"):
            read_interactions(fmt, path)


@PROPERTY
@given(
    fmt=st.sampled_from(["csv", "recbole"]),
    log=rows,
    row=st.integers(min_value=0),
    value=st.sampled_from(["nan", "inf", "-inf"]),
)
def test_a_time_that_is_no_finite_number_is_refused_naming_its_line(fmt, log, row, value):
    name, write = WRITERS[fmt]
    row %= len(log)
    lines = write(log).splitlines(keepends=True)
    sep = "," if fmt == "csv" else "\t"
    fields = lines[row + 1].rstrip("\n").split(sep)
    fields[2 if fmt == "csv" else 3] = value  # the time column
    lines[row + 1] = sep.join(fields) + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text("".join(lines))
        with pytest.raises(SourceFormatError, match=rf"line {row + 2}: .*{value} is not a finite number"):
            read_interactions(fmt, path)


@PROPERTY
@given(fmt=st.sampled_from(FORMATS), log=rows)
def test_a_utf8_byte_order_mark_changes_nothing(fmt, log):
    name, write = WRITERS[fmt]
    with tempfile.TemporaryDirectory() as tmp:
        plain, marked = Path(tmp) / name, Path(tmp) / "bom" / name
        marked.parent.mkdir()
        plain.write_text(write(log))
        marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
        assert read_interactions(fmt, marked).equals(read_interactions(fmt, plain))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    seqs = [(rng.permutation(12)[: rng.integers(3, 9)] + 1).astype(np.int32) for _ in range(20)]
    return write_prepared(
        tmp_path_factory.mktemp("prepared") / "ds",
        seqs,
        [f"u{u}" for u in range(20)],
        [f"i{i}" for i in range(12)],
        name="ds",
        source={"format": "test"},
        params={},
        features={"genre": ([[1 + i % 3] for i in range(12)], 4)},
    )


# an edit of one file's bytes: flip, overwrite, cut short, or insert
edits = st.tuples(
    st.sampled_from(["sequences.parquet", "items.parquet", "meta.json"]),
    st.sampled_from(["flip", "overwrite", "truncate", "insert"]),
    st.floats(min_value=0, max_value=1, exclude_max=True),
    st.binary(min_size=1, max_size=8),
)


def _edit(raw: bytes, how: str, at: float, data: bytes) -> bytes:
    pos = int(at * len(raw))
    if how == "flip":
        return raw[:pos] + bytes([raw[pos] ^ (data[0] or 1)]) + raw[pos + 1 :]
    if how == "overwrite":
        return raw[:pos] + data + raw[pos + len(data) :]
    if how == "truncate":
        return raw[:pos]
    return raw[:pos] + data + raw[pos:]


@PROPERTY
@given(edit=edits)
def test_an_edited_dataset_loads_unchanged_or_fails_naming_the_file(prepared, edit):
    name, how, at, data = edit
    original = load_dataset(prepared)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(shutil.copytree(prepared, Path(tmp) / "ds"))
        raw = (copy / name).read_bytes()
        changed = _edit(raw, how, at, data)
        if changed == raw:
            return
        (copy / name).write_bytes(changed)
        try:
            ds = load_dataset(copy)
        except DatasetError as e:
            assert str(e).startswith(str(copy)), e
            assert "\n" not in str(e)
            return
        # what loads is the dataset that was prepared: the same tables, counts that match them
        assert ds.sequences.equals(original.sequences) and ds.items.equals(original.items), (name, how)
        _assert_counts_match_tables(ds)


@PROPERTY
@given(
    key=st.sampled_from(["users", "items", "interactions"]),
    value=st.one_of(st.integers(min_value=-5, max_value=10**6), st.none(), st.text(max_size=3)),
)
def test_edited_counts_in_meta_are_refused(prepared, key, value):
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(shutil.copytree(prepared, Path(tmp) / "ds"))
        meta = json.loads((copy / "meta.json").read_text())
        if meta["stats"][key] == value:
            return
        meta["stats"][key] = value
        (copy / "meta.json").write_text(json.dumps(meta))
        with pytest.raises(DatasetError, match=rf"meta\.json: stats\.{key} is .*, but .* holds"):
            load_dataset(copy)


def test_an_out_of_range_item_id_is_refused(prepared, tmp_path):
    import pyarrow.parquet as pq

    copy = Path(shutil.copytree(prepared, tmp_path / "ds"))
    table = pq.read_table(copy / "sequences.parquet")
    items = table.column("items").combine_chunks()
    values = items.values.to_numpy().copy()
    values[-1] = 0  # padding where an item belongs
    pq.write_table(
        table.set_column(2, "items", pa.ListArray.from_arrays(items.offsets, pa.array(values))),
        copy / "sequences.parquet",
    )
    with pytest.raises(DatasetError, match=r"sequences\.parquet: user 19 holds item id 0, outside 1\.\.12"):
        load_dataset(copy)
