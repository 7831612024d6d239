"""One command line: every `glintru` subcommand and every script that is the same command ends a
user's mistake in exit code 2 and one `error:` line, and reads its defaults and choices where they
are defined."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from pathlib import Path

import pytest

from glintru.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def _script(relative: str):
    spec = importlib.util.spec_from_file_location(f"command_{Path(relative).stem}", REPO / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


# a mistake each command reports before any work: (command words, the script that is the same command,
# the rest of the command line, what the error line names); `MISSING` stands for a path that is not there
MISSING = "MISSING"
MISTAKES = [
    (["search"], "tune/search.py", ["--space", "glintru"], "--data is required"),
    (["study"], "tune/study.py", ["activations"], "--data is required"),
    (["significance"], "analysis/significance.py", [MISSING], "neither an experiment directory"),
    (["report"], "analysis/report.py", [MISSING, "--out", "OUT"], "neither an experiment directory"),
    (["reproduce"], "analysis/reproduction.py", [MISSING], "not finished run directories"),
    (["prepare"], None, ["--input", MISSING, "--out", "OUT"], "needs --format FORMAT or --dataset NAME"),
    (["synthetic"], None, ["--scale", "0.5", "--out", "OUT"], "--scale applies to --like shapes only"),
]


def _argv(rest: list[str], tmp_path: Path) -> list[str]:
    return [str(tmp_path / "missing") if w == MISSING else str(tmp_path / "out") if w == "OUT" else w for w in rest]


def _one_error(code: int, err: str, message: str) -> None:
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("words, script, rest, message", MISTAKES, ids=[m[0][0] for m in MISTAKES])
def test_a_mistake_exits_2_with_one_error_line(words, script, rest, message, tmp_path, capsys):
    _one_error(main([*words, *_argv(rest, tmp_path)]), capsys.readouterr().err, message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "words, script, rest, message", [m for m in MISTAKES if m[1]], ids=[m[1] for m in MISTAKES if m[1]]
)
def test_the_script_of_a_command_ends_a_mistake_the_same_way(words, script, rest, message, tmp_path, capsys):
    _one_error(_script(script)(_argv(rest, tmp_path)), capsys.readouterr().err, message)


def test_every_command_with_a_script_is_a_subcommand():
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {m[0][0] for m in MISTAKES if m[1]} | {"train", "evaluate"} <= commands


def test_the_library_log_is_shown_while_a_command_runs_and_removed_after(capsys):
    from glintru.command import run_command

    logger = logging.getLogger("glintru")
    handlers, level = list(logger.handlers), logger.level

    def body() -> int:
        logger.info("working")
        raise KeyError("no such column: x")

    assert run_command(body, errors=(KeyError,)) == 2
    assert capsys.readouterr().err.splitlines() == ["working", "error: no such column: x"]
    assert (logger.handlers, logger.level) == (handlers, level)


def test_an_interruption_exits_130_with_how_to_go_on(capsys):
    from glintru.command import run_command
    from glintru.search.settings import SearchInterrupted

    def stopped() -> int:
        raise SearchInterrupted("stopped; resume with: X")

    def ctrl_c() -> int:
        raise KeyboardInterrupt

    assert run_command(stopped, interrupted=(SearchInterrupted,), resume_hint="or the same command") == 130
    assert capsys.readouterr().err.splitlines() == ["interrupted: stopped; resume with: X", "or the same command"]
    assert run_command(ctrl_c, stopped_early="interrupted before the search started") == 130
    assert capsys.readouterr().err.strip() == "interrupted before the search started"


# -- defaults and choices, read where they are defined ---------------------------------------------


def _action(parser, flag: str):
    return next(a for a in parser._actions if flag in a.option_strings)


def _sub(parser, name: str):
    return parser._subparsers._group_actions[0].choices[name]  # type: ignore[union-attr]


# other defaults than TrainConfig's, and what the help of each flag then says
TRAIN_DEFAULTS = {"epochs": 7, "patience": 3, "seed": 5, "eval_mode": "uni9", "device": "cpu", "select_metric": "mrr@5"}
TRAIN_HELP = [
    ("--epochs", "default 7"),
    ("--patience", "default 3"),
    ("--patience", "select_metric is mrr@5"),
    ("--eval-mode", "default uni9"),
    ("--seed", "default 5"),
    ("--device", "default cpu"),
]


@pytest.fixture
def other_train_config(monkeypatch):
    """TrainConfig with other defaults, as if they were changed where they are defined."""
    import glintru.train

    fields = [(k, type(v), dataclasses.field(default=v)) for k, v in TRAIN_DEFAULTS.items()]
    other = dataclasses.make_dataclass("OtherTrainConfig", fields, bases=(glintru.train.TrainConfig,))
    monkeypatch.setattr(glintru.train, "TrainConfig", other)


@pytest.mark.parametrize("flag, text", TRAIN_HELP, ids=[t for _, t in TRAIN_HELP])
def test_train_help_names_the_default_of_train_config(flag, text, other_train_config):
    """The flags default to None (a resume tells a typed flag from one left out); their help names
    TrainConfig's default, so a changed default changes the help."""
    action = _action(_sub(build_parser(), "train"), flag)
    assert action.default is None and text in action.help, action.help


def test_evaluate_device_defaults_to_train_config(other_train_config):
    assert _action(_sub(build_parser(), "evaluate"), "--device").default == "cpu"


def test_download_flags_default_to_fetch(monkeypatch):
    import glintru.data.download

    def other_fetch(url, dest, *, attempts=9, timeout=5.0):
        raise AssertionError("not called")

    monkeypatch.setattr(glintru.data.download, "fetch", other_fetch)
    download = _sub(build_parser(), "download")
    assert (_action(download, "--attempts").default, _action(download, "--timeout").default) == (9, 5.0)
