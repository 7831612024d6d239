"""The search commands of the README and the docs/ pages as written: each parses with the real
argument parser and passes the settings checks, `--set` keeps every pair in both of its forms, and
docs/SEARCH.md documents exactly the flags the search has."""

from __future__ import annotations

import re
import shlex

import pytest
import ray
from test_search_cli import cli

from glintru.search.plan import plan_search
from glintru.search.settings import validate_settings
from glintru.settings import split_pairs

from doc_pages import code_commands, examples, pages

PREFIX = "python tune/search.py"
SEARCH_PAGE = pages()["docs/SEARCH.md"]
COMMANDS = [command for _, command in examples(PREFIX)]
SEARCH_COMMANDS = [c for c in code_commands(SEARCH_PAGE) if c.startswith(PREFIX)]


def _args(command: str) -> list[str]:
    words = shlex.split(command)
    assert words[:2] == ["python", "tune/search.py"], command
    return words[2:]


def test_the_docs_show_search_commands():
    assert len(COMMANDS) >= 4, COMMANDS
    assert any("--set" in c for c in SEARCH_COMMANDS)


@pytest.mark.parametrize("command", [c for c in COMMANDS if "--space list" not in c])
def test_readme_search_command_passes_the_settings_checks(command):
    """Every setting of the command as the search checks it before it looks at files or Ray."""
    args = cli.build_parser().parse_args(_args(command))
    if args.resume:  # a resume takes its settings from the experiment it continues
        assert args.name and args.space is None and args.data is None, command
        return
    settings = cli.settings_from_args(args)
    validate_settings(settings)
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def wide_data(tmp_path_factory):
    """A tiny dataset with more items than the documented protocols draw negatives (pop100)."""
    from glintru.data.synthetic import generate

    return generate(
        tmp_path_factory.mktemp("data") / "wide", n_users=60, n_items=150, avg_length=6, seed=0, features=False
    )


@pytest.mark.parametrize("command", [c for c in SEARCH_COMMANDS if "--set" in c])
def test_readme_set_example_keeps_every_pair(command, wide_data, tmp_path):
    """The search page's `--set` example, with both forms of the flag, as written: every pair
    reaches the settings, and the whole plan passes (the dataset swapped for a tiny local one)."""
    args = _args(command)
    set_words, after_set = [], False
    for word in args:
        after_set = word == "--set" or (after_set and not word.startswith("--"))
        if after_set and word != "--set":
            set_words.append(word)
    set_pairs = dict(split_pairs(set_words))
    assert args.count("--set") >= 2 and len(set_pairs) >= 3, "show both --set forms"
    settings = cli.settings_from_args(cli.build_parser().parse_args(args))
    assert set(settings.overrides) == set(set_pairs)
    args[args.index("--data") + 1] = str(wide_data)
    plan = plan_search(cli.settings_from_args(cli.build_parser().parse_args([*args, "--storage", str(tmp_path)])))
    assert plan.settings.overrides == settings.overrides
    assert not ray.is_initialized() and not any(tmp_path.iterdir())


def test_every_documented_search_flag_exists():
    documented = set(re.findall(r"`(--[a-z][a-z-]*)", SEARCH_PAGE))
    known = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", cli.build_parser().format_help()))
    assert documented - known == set()
    # and every flag of the parser is documented
    assert known - documented - {"--help"} == set()
