"""Bad inputs to the search command line, tried as a new user would: one table, one row per mistake.

Each row runs tune/search.py's main() in-process on otherwise valid arguments with exactly one thing
wrong and asserts the exit code, that the message names the culprit (flag, key, value, expected
type or file), that Ray never started (every row is caught before it), and that nothing was written:
the row's own paths are absent and the scratch directory holds only what the row put there.

To add a mistake, add a Case to CASES. `ws` in the builders is the Workspace below: the shared
valid dataset plus a fresh scratch directory per row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray
from test_search_cli import cli


@dataclass
class Workspace:
    data: Path  # a valid prepared dataset (shared: no row may change it)
    scratch: Path  # this row's own directory

    @property
    def storage(self) -> Path:
        return self.scratch / "results"


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Workspace], list[str]]  # the arguments after the valid base (see _argv)
    code: int  # 2: a SearchError or an argparse error
    message: str  # regex that must match stderr, naming the culprit
    absent: Callable[[Workspace], list[Path]] = lambda ws: []
    base: bool = True  # prefix the valid --space/--data/--storage/--name


def _argv(ws: Workspace, case: Case) -> list[str]:
    base = [
        "--space",
        "glintru",
        "--data",
        str(ws.data),
        "--storage",
        str(ws.storage),
        "--name",
        "exp",
        "--num-cpus",
        "2",
    ]
    return (base if case.base else []) + case.argv(ws)


CASES = [
    # --- --set: keys, types, both forms of the flag, duplicates
    Case(
        "set-wrong-type-model",
        lambda ws: ["--set", "kernel_size=abc"],
        2,
        r"--set glintru setting kernel_size='abc' \(str\) is invalid: expected int",
    ),
    Case(
        "set-wrong-type-training",
        lambda ws: ["--set", "max_length=20", "lr=fast"],
        2,
        r"--set training setting lr='fast' \(str\) is invalid: expected float",
    ),
    Case(
        "set-bool-for-float",
        lambda ws: ["--set", "dropout=true"],
        2,
        r"dropout=True \(bool\) is invalid: expected float",
    ),
    Case(
        "set-repeated-flag-keeps-every-pair",
        lambda ws: ["--set", "max_length=20", "--set", "bogus=1"],
        2,
        r"--set bogus: not a setting of glintru \(model keys: .*kernel_size",
    ),
    Case(
        "set-key-twice",
        lambda ws: ["--set", "lr=0.1", "--set", "lr=0.2"],
        2,
        r"--set sets 'lr' twice \(0\.1 and 0\.2\); keep one",
    ),
    Case("set-not-a-pair", lambda ws: ["--set", "max_length"], 2, r"--set expects key=value, got 'max_length'"),
    Case(
        "set-managed-by-the-search",
        lambda ws: ["--set", "epochs=3"],
        2,
        r"--set epochs=\.\.\. is managed by the search; use --max-epochs",
    ),
    Case(
        "set-select-metric-managed-by-the-objective",
        lambda ws: ["--set", "select_metric=recall@20"],
        2,
        r"--set select_metric=\.\.\. is managed by the search; use --objective",
    ),
    Case(
        "set-unknown-ablation",
        lambda ws: ["--set", "ablation=no_everything"],
        2,
        r"--set ablation='no_everything': unknown ablation 'no_everything'",
    ),
    # a bad setting is reported before the files are looked at
    Case(
        "set-checked-before-data",
        lambda ws: [
            "--space",
            "glintru",
            "--data",
            str(ws.scratch / "absent"),
            "--storage",
            str(ws.storage),
            "--set",
            "kernel_size=abc",
        ],
        2,
        r"kernel_size='abc'",
        base=False,
    ),
    # --- --grid: types, duplicates, values the model refuses
    Case(
        "grid-wrong-type",
        lambda ws: ["--grid", "kernel_size=3,a"],
        2,
        r"--grid glintru setting kernel_size='a' \(str\) is invalid: expected int",
    ),
    Case("grid-key-twice", lambda ws: ["--grid", "lr=1e-3", "--grid", "lr=1e-2"], 2, r"--grid lists 'lr' twice"),
    Case(
        "grid-managed-by-the-search",
        lambda ws: ["--grid", "seed=1,2"],
        2,
        r"--grid seed=\.\.\. is managed by the search; use --seed/--seeds",
    ),
    Case(
        "grid-invalid-combination",
        lambda ws: ["--grid", "hidden_size=30"],
        2,
        r"configuration \{'hidden_size': 30\} is invalid for glintru: .*divisible",
    ),
    Case(
        "grid-and-num-samples",
        lambda ws: ["--grid", "lr=1e-3,1e-2", "--num-samples", "4"],
        2,
        r"--num-samples applies to an Optuna search",
    ),
    # --- values of the right type that no run means, checked as glintru train checks them
    Case(
        "set-negative-grad-clip",
        lambda ws: ["--set", "grad_clip=-1"],
        2,
        r"--set: grad_clip must be positive \(the largest gradient norm a step keeps; None clips nothing\), got -1",
    ),
    Case(
        "set-negative-weight-decay", lambda ws: ["--set", "weight_decay=-0.1"], 2, r"--set: weight_decay must be >= 0"
    ),
    Case("set-lr-overflows", lambda ws: ["--set", "lr=1e300"], 2, r"--set: lr=1e\+300 overflows the first step"),
    Case(
        "grid-negative-weight-decay",
        lambda ws: ["--grid", "weight_decay=0,-1"],
        2,
        r"configuration \{'weight_decay': -1\} is invalid for glintru: weight_decay must be >= 0, got -1\.0",
    ),
    Case(
        "set-kernel-wider-than-a-history",
        lambda ws: ["--set", "kernel_size=21", "max_length=20"],
        2,
        r"is invalid for glintru: kernel_size 21 exceeds max_length 20",
    ),
    Case(
        "eval-mode-as-many-negatives-as-items",
        lambda ws: ["--eval-mode", "pop1000"],
        2,
        r"--eval-mode: eval_mode pop1000 draws 1000 negatives, but the dataset has only \d+ items",
    ),
    # --- the other flags
    Case("eval-mode-unknown", lambda ws: ["--eval-mode", "pop-3"], 2, r"--eval-mode: .*'pop-3'"),
    Case(
        "seeds-not-integers",
        lambda ws: ["--seeds", "0,x"],
        2,
        r"argument --seeds: expects integers separated by commas .*'0,x'",
    ),
    Case(
        "optuna-storage-not-a-journal",
        lambda ws: ["--optuna-storage", "study.txt"],
        2,
        r"--optuna-storage must be .* ending in \.journal or \.log; got 'study\.txt'",
    ),
    Case(
        "cpus-per-trial-beyond-the-machine",
        lambda ws: ["--cpus-per-trial", "64"],
        2,
        r"--cpus-per-trial 64 exceeds the 2 CPUs",
    ),
    Case("name-not-a-directory-name", lambda ws: ["--name", "a/b"], 2, r"--name 'a/b' must be a plain directory name"),
    Case("missing-space", lambda ws: ["--data", str(ws.data)], 2, r"--space is required", base=False),
    # --- files
    Case(
        "data-missing",
        lambda ws: ["--space", "glintru", "--data", str(ws.scratch / "absent"), "--storage", str(ws.storage)],
        2,
        r"--data: .*absent: no such dataset directory",
        base=False,
    ),
    Case(
        "storage-is-a-file",
        lambda ws: ["--storage", str(ws.data / "meta.json")],
        2,
        r"--storage .*meta\.json: .*meta\.json is a file, not a directory; choose a directory for the results",
    ),
    Case(
        "storage-inside-the-dataset",
        lambda ws: ["--storage", str(ws.data / "results")],
        2,
        r"--storage .*: the experiment .*results/exp would be inside a prepared dataset \(glintru prepare, "
        r"glintru synthetic\), .*; choose a --storage outside it",
    ),
    Case(
        "storage-inside-a-report",
        lambda ws: [
            "--storage",
            str(_marked(ws.scratch / "report", "report") / "results"),
        ],
        2,
        r"the experiment .*report/results/exp would be inside a report \(analysis/report.py\)",
        absent=lambda ws: [ws.scratch / "report" / "results"],
    ),
    Case(
        "resume-nothing",
        lambda ws: ["--resume", "--name", "never-ran", "--storage", str(ws.storage)],
        2,
        r"nothing to resume: .*never-ran holds no experiment\.json",
        base=False,
    ),
]


def _marked(path: Path, kind: str) -> Path:
    """An output directory of `kind` (made when a row's arguments are built, before the snapshot)."""
    from glintru.outputs import mark

    path.mkdir(parents=True, exist_ok=True)
    mark(path, kind)
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_search_input(case: Case, tiny_data, tmp_path, capsys):
    ws = Workspace(data=tiny_data, scratch=tmp_path)
    argv = _argv(ws, case)
    before = sorted(tmp_path.rglob("*"))
    assert not ray.is_initialized()
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    assert code == case.code, err
    assert re.search(case.message, err), f"{case.message!r} not in:\n{err}"
    assert not ray.is_initialized(), "Ray started before the mistake was caught"
    for path in [ws.storage, *case.absent(ws)]:
        assert not path.exists(), f"{path} was written"
    assert sorted(tmp_path.rglob("*")) == before, "the row left files behind"


def test_a_second_search_of_the_same_name_is_refused_before_ray_starts(tiny_data, tmp_path, holder, capsys):
    import platform

    ws = Workspace(data=tiny_data, scratch=tmp_path)
    exp = ws.storage / "exp"
    proc = holder(exp)  # the first search, still running
    code = cli.main(_argv(ws, Case("second", lambda ws: [], 2, "")))
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"error: {exp} is being written by another command: pid {proc.pid} on host {platform.node()}" in err
    assert not ray.is_initialized() and not exp.exists()
