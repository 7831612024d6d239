"""The format registry is the one list of raw formats: a format registered in one place (the
CONTRIBUTING.md recipe, followed here by a toy 'session log' format) is prepared end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from glintru import cli
from glintru.data.sources import (
    FORMATS,
    SOURCE_FORMATS,
    SourceFormat,
    SourceFormatError,
    get_format,
    make_table,
    read_bytes,
    read_table_items,
    register_format,
    unregister_format,
)


def read_session_log(path: Path, columns=None) -> pd.DataFrame:
    """`time|user|item` per line, as some click logs are exported."""
    users, items, times = [], [], []
    for lineno, line in enumerate(read_bytes(path).decode().splitlines(), 1):
        parts = line.split("|")
        if len(parts) != 3 or not parts[0].isdigit():
            raise SourceFormatError(path, lineno, f"expected time|user|item, got {line!r}")
        times.append(int(parts[0]))
        users.append(parts[1])
        items.append(parts[2])
    return make_table(users, items, timestamp=times)


@pytest.fixture
def session_format():
    register_format(SourceFormat("session-log", "time|user|item lines", read_session_log, read_table_items))
    yield "session-log"
    unregister_format("session-log")


def test_builtin_formats_are_the_registry():
    assert FORMATS == tuple(SOURCE_FORMATS)[: len(FORMATS)]
    assert set(FORMATS) == {"movielens", "amazon-json", "amazon-csv", "recbole", "seq-txt", "csv"}
    parser = cli.build_parser()
    for fmt in FORMATS:
        assert parser.parse_args(["prepare", "--format", fmt, "--input", "x", "--out", "y"]).format == fmt
    with pytest.raises(ValueError, match="unknown format 'nope'; choose one of movielens, "):
        get_format("nope")


def test_a_registered_format_is_prepared_through_the_cli(session_format, tmp_path, capsys):
    log = tmp_path / "clicks.log"
    # out of time order on purpose: preparation sorts each user's items by time
    rows = [
        (3, "u1", "c"),
        (1, "u1", "a"),
        (2, "u1", "b"),
        (1, "u2", "b"),
        (2, "u2", "c"),
        (3, "u2", "a"),
        (5, "u1", "d"),
    ]
    log.write_text("".join(f"{t}|{u}|{i}\n" for t, u, i in rows))
    out = tmp_path / "prepared"
    assert cli.main(["prepare", "--format", session_format, "--input", str(log), "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["stats"]["users"] == 2 and meta["stats"]["items"] == 4 and meta["stats"]["interactions"] == 7
    from glintru.data.dataset import load_dataset

    ds = load_dataset(out)
    users = ds.sequences.column("original_id").to_pylist()
    item_ids = dict(zip(ds.items.column("item").to_pylist(), ds.items.column("original_id").to_pylist()))
    assert [item_ids[i] for i in ds.sequence(users.index("u1"))] == ["a", "b", "c", "d"]
    assert [item_ids[i] for i in ds.sequence(users.index("u2"))] == ["b", "c", "a"]


def test_a_registered_format_reports_its_bad_line(session_format, tmp_path, capsys):
    log = tmp_path / "bad.log"
    log.write_text("1|u1|a\nnot a line\n")
    code = cli.main(["prepare", "--format", session_format, "--input", str(log), "--out", str(tmp_path / "o")])
    assert code == 2
    assert f"{log} line 2: expected time|user|item" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_names_are_unique(session_format):
    with pytest.raises(ValueError, match="already registered"):
        register_format(SourceFormat("session-log", "", read_session_log, read_table_items))
