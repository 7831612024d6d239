"""glintru.outputs: the marker that says what a directory is, what --overwrite may replace, and the
lock that lets one command at a time write an output directory."""

from __future__ import annotations

import json
import os
import platform
import signal

import pytest

from glintru.data.synthetic import generate
from glintru.outputs import (
    DATASET,
    MARKER_FILE,
    REPORT,
    RUN,
    OutputError,
    check_output,
    describe,
    file_mode,
    lock_path,
    locked,
    mark,
    output_around,
    replace_dir,
)


def small_dataset(path):
    return generate(path, n_users=20, n_items=10, avg_length=5, features=False)


def small_run(tmp_path):
    """A finished run directory as glintru train writes it (one epoch of a tiny GRU4Rec)."""
    from glintru.train import TrainConfig, train

    data = small_dataset(tmp_path / "run-data")
    cfg = TrainConfig(epochs=1, device="cpu", eval_mode="uni5")
    train(data, "gru4rec", tmp_path / "run", overrides={"hidden_size": 8, "max_length": 6}, config=cfg, progress=False)
    return tmp_path / "run"


# ----------------------------------------------------------------------------- the marker


def test_the_commands_mark_their_directories_and_older_ones_are_known_by_their_files(tmp_path):
    data, run = small_dataset(tmp_path / "data"), small_run(tmp_path)
    for path, kind in ((data, DATASET), (run, RUN)):
        assert json.loads((path / MARKER_FILE).read_text())["kind"] == kind
        assert describe(path)[0] == kind
        (path / MARKER_FILE).unlink()  # as written before markers existed: known by the files there
        assert describe(path)[0] == kind, sorted(os.listdir(path))
        (path / "notes.txt").write_text("mine")
        found, what = describe(path)
        assert found is None and "files glintru did not write (notes.txt)" in what


def test_a_marked_output_with_files_its_command_does_not_write_is_no_longer_its_kind(tmp_path):
    # replacing it would delete a user's notes, or another output put inside it
    data, run = small_dataset(tmp_path / "data"), small_run(tmp_path)
    (data / "NOTES.md").write_text("mine")
    (data / "raw").mkdir()
    found, what = describe(data)
    assert found is None
    assert (
        what
        == "a prepared dataset (glintru prepare, glintru synthetic), but also files glintru did not write (NOTES.md, raw/)"
    )
    with pytest.raises(OutputError, match=r"but also files glintru did not write \(NOTES.md, raw/\)"):
        check_output(data, DATASET, replace=True)
    (run / "my-search").mkdir()
    assert describe(run)[0] is None and "(my-search/)" in describe(run)[1]
    (run / "my-search").rmdir()
    assert describe(run)[0] == RUN
    (tmp_path / "report").mkdir()
    mark(tmp_path / "report", REPORT)
    (tmp_path / "report" / "my_edits.md").write_text("mine")
    assert describe(tmp_path / "report")[0] is None


def test_output_around_names_the_nearest_output_holding_a_path(tmp_path):
    data, run = small_dataset(tmp_path / "data"), small_run(tmp_path)
    assert output_around(data / "meta.json") == (DATASET, data)
    assert output_around(data / "new" / "deep" / "x.md") == (DATASET, data)
    assert output_around(run / "metrics.json") == (RUN, run)
    (run / MARKER_FILE).unlink()  # an older run, known by its files
    assert output_around(run / "table.md") == (RUN, run)
    assert output_around(tmp_path / "table.md") is None
    assert output_around(tmp_path / "elsewhere" / "table.md") is None


def test_a_written_file_keeps_the_mode_of_the_one_it_replaces_or_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert file_mode(tmp_path / "new.md") == 0o644
        os.umask(0o077)
        assert file_mode(tmp_path / "new.md") == 0o600
    finally:
        os.umask(old)
    (tmp_path / "shared.md").write_text("x")
    os.chmod(tmp_path / "shared.md", 0o664)
    assert file_mode(tmp_path / "shared.md") == 0o664


def test_marker_content_is_the_kind_alone(tmp_path):
    a, b = small_dataset(tmp_path / "a"), small_dataset(tmp_path / "b")
    assert (a / MARKER_FILE).read_bytes() == (b / MARKER_FILE).read_bytes()  # no time, no host


# ----------------------------------------------------------------------------- what may be written


@pytest.fixture
def tree(tmp_path):
    """home/ with a user's files, a prepared dataset inside it, a report, a file and links."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("secret")
    (home / "notes.txt").write_text("mine")
    data = small_dataset(home / "data")
    report = tmp_path / "report"
    report.mkdir()
    mark(report, REPORT)
    (tmp_path / "file.txt").write_text("a file")
    (tmp_path / "to-data").symlink_to(data)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return tmp_path


REFUSED = [
    # (path, kind, options, message)
    ("home/data", RUN, {"inputs": {"--data": "home/data"}}, "is this command's input (--data "),
    ("home", RUN, {"inputs": {"--data": "home/data"}}, "holds this command's input (--data "),
    ("to-data", RUN, {"inputs": {"--data": "home/data"}}, "is this command's input"),
    ("home", RUN, {}, "holds files glintru did not write (.ssh/, data/, notes.txt), not a run directory"),
    ("home", DATASET, {"replace": True}, "holds files glintru did not write (.ssh/, data/, notes.txt)"),
    ("home/data", RUN, {"replace": True}, "holds a prepared dataset (glintru prepare, glintru synthetic), not a run"),
    ("report", DATASET, {}, "holds a report (analysis/report.py), not a prepared dataset"),
    ("file.txt", RUN, {}, "exists and is not a directory"),
    ("to-data", DATASET, {"replace": True}, "is a symbolic link to "),
    ("loop", RUN, {}, "cannot resolve it"),
    ("home/data/run", RUN, {}, "is inside a prepared dataset (glintru prepare, glintru synthetic), "),
]


@pytest.mark.parametrize("path, kind, options, message", REFUSED, ids=[f"{r[0]}-{r[3][:20]}" for r in REFUSED])
def test_check_output_refuses_and_names_the_path(tree, snapshot, path, kind, options, message):
    options = {k: {f: str(tree / p) for f, p in v.items()} if k == "inputs" else v for k, v in options.items()}
    before = snapshot(tree)
    with pytest.raises(OutputError) as e:
        check_output(tree / path, kind, **options)
    assert f"--out {tree / path}" in str(e.value) and message in str(e.value) and "choose another --out" in str(e.value)
    assert snapshot(tree) == before


def test_check_output_accepts_new_empty_and_own_kind(tree):
    assert check_output(tree / "new" / "run", RUN) == tree / "new" / "run"
    (tree / "empty").mkdir()
    assert check_output(tree / "empty", DATASET, replace=True) == tree / "empty"
    assert check_output(tree / "home" / "data", DATASET, replace=True) == tree / "home" / "data"
    assert check_output(tree / "to-data", DATASET) == tree / "home" / "data"  # judged as its target
    assert check_output(tree / "home", "download", allow_foreign=True) == tree / "home"  # files are only added


def test_replace_dir_swaps_whole_directories(tmp_path):
    out, new = tmp_path / "out", tmp_path / ".out.tmp"
    out.mkdir()
    (out / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    replace_dir(new, out)
    assert os.listdir(out) == ["new.txt"] and sorted(os.listdir(tmp_path)) == ["out"]


# ----------------------------------------------------------------------------- the lock


def test_a_second_lock_is_refused_with_pid_and_host_and_released_cleanly(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with locked(out):
        assert lock_path(out).is_file()
        with pytest.raises(OutputError) as e:
            locked(out).acquire()
        assert f"{out} is being written by another command: pid {os.getpid()} on host {platform.node()}" in str(e.value)
    assert os.listdir(tmp_path) == []  # the lock file and the folders made for it are gone


def test_another_process_holding_the_lock_is_named_then_a_killed_one_is_taken_over(tmp_path, holder, caplog):
    out = tmp_path / "out"
    proc = holder(out)
    with pytest.raises(OutputError, match=f"pid {proc.pid} on host {platform.node()}, since .*; wait for it"):
        locked(out).acquire()
    proc.send_signal(signal.SIGKILL)  # no chance to release: its lock file stays behind
    proc.wait()
    assert lock_path(out).exists()
    with caplog.at_level("WARNING", logger="glintru"), locked(out):
        pass
    assert f"taking over the stale lock of pid {proc.pid} on host {platform.node()}, which no longer runs" in (
        caplog.text
    )
    assert not lock_path(out).exists()


def test_a_stale_lock_file_of_a_dead_pid_is_taken_over(tmp_path, caplog, dead_pid):
    out = tmp_path / "out"
    pid = dead_pid
    lock_path(out).write_text(json.dumps({"pid": pid, "host": platform.node(), "since": "earlier"}))
    with caplog.at_level("WARNING", logger="glintru"), locked(out):
        info = json.loads(lock_path(out).read_text())
    assert info["pid"] == os.getpid() and info["host"] == platform.node()
    assert f"taking over the stale lock of pid {pid}" in caplog.text


def test_the_lock_survives_the_rename_of_a_finished_temporary_directory(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with locked(out):
        new = tmp_path / ".out.tmp"
        new.mkdir()
        replace_dir(new, out)
        with pytest.raises(OutputError, match="is being written by another command"):
            locked(out).acquire()
