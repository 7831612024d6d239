"""The README's search commands as written: each parses with the real argument parser and passes
the settings checks, `--set` keeps every pair in both of its forms, and every flag the search
section documents exists."""

from __future__ import annotations

import re
import shlex

import pytest
import ray
from test_search_cli import cli

from glintru.search.plan import plan_search
from glintru.search.settings import validate_settings
from glintru.settings import split_pairs

from search_helpers import REPO

README = (REPO / "README.md").read_text()
PREFIX = "python tune/search.py"


def _section(title: str) -> str:
    start = README.index(f"\n## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def _code_commands(text: str) -> list[str]:
    """Commands of the indented code blocks, continuation lines joined, comments dropped, and a
    `for m in a b; do ... $m ...` loop unrolled."""
    joined = re.sub(r"\\\n\s*", "", text)
    commands, loop = [], None
    for line in joined.splitlines():
        if not line.startswith("    "):
            continue
        stripped = line.strip()
        if match := re.match(r"for (\w+) in ([^;]+); do", stripped):
            loop = (match.group(1), match.group(2).split())
            continue
        if not stripped.startswith(PREFIX):
            continue
        command = stripped.split("  #", 1)[0].strip()
        if loop and f"${loop[0]}" in command:
            commands += [command.replace(f"${loop[0]}", value) for value in loop[1]]
        else:
            commands.append(command)
    return commands


def _args(command: str) -> list[str]:
    words = shlex.split(command)
    assert words[:2] == ["python", "tune/search.py"], command
    return words[2:]


COMMANDS = _code_commands(README)


def test_the_readme_shows_search_commands():
    assert len(COMMANDS) >= 4, COMMANDS
    assert any("--set" in c for c in _code_commands(_section("Hyperparameter search")))


@pytest.mark.parametrize("command", [c for c in COMMANDS if "--space list" not in c])
def test_readme_search_command_passes_the_settings_checks(command):
    """Every setting of the command as the search checks it before it looks at files or Ray."""
    settings = cli.settings_from_args(cli.build_parser().parse_args(_args(command)))
    validate_settings(settings)
    assert not ray.is_initialized()


@pytest.mark.parametrize("command", [c for c in _code_commands(_section("Hyperparameter search")) if "--set" in c])
def test_readme_set_example_keeps_every_pair(command, tiny_data, tmp_path):
    """The search section's `--set` example, with both forms of the flag, as written: every pair
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
    args[args.index("--data") + 1] = str(tiny_data)
    plan = plan_search(cli.settings_from_args(cli.build_parser().parse_args([*args, "--storage", str(tmp_path)])))
    assert plan.settings.overrides == settings.overrides
    assert not ray.is_initialized() and not any(tmp_path.iterdir())


def test_every_documented_search_flag_exists():
    documented = set(re.findall(r"`(--[a-z][a-z-]*)", _section("Hyperparameter search")))
    documented |= set(re.findall(r"\| `(--[a-z][a-z-]*)", _section("Hyperparameter search")))
    known = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", cli.build_parser().format_help()))
    assert documented - known == set()
    # and every flag of the parser is documented
    assert known - documented - {"--help"} == set()
