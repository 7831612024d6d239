"""The README and the docs/ pages against the code: every page is linked from the README, every
example command parses with its program's own parser, `make` examples name real targets and
variables, and every flag the pages mention exists."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import re
import shlex
import sys
from collections.abc import Callable

import pytest

from glintru import cli

from doc_pages import REPO, code_commands, examples, pages, section

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# Flags of other tools that the pages mention in prose: docker build, jupyter execute.
FOREIGN_FLAGS = {"--build-arg", "--output"}
# The programs of this repository that example commands start with (ray, docker, pip, ... are not).
OUR_PROGRAMS = ("glintru", "python", "make", "benchmarks/gpu.sh")


@functools.cache
def _load(path: str):
    """A script as a module (registered under its own name: its dataclasses look themselves up)."""
    name = f"docs_{path.replace('/', '_')[:-3]}"
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _help_options(call: Callable[[], object]) -> set[str]:
    """The long options an argparse command line lists under --help (call runs it with --help)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        call()
    return set(re.findall(r"^  (?:-\w, )?(--[a-z][a-z0-9-]*)", out.getvalue(), re.MULTILINE)) - {"--help"}


def _script_help(path: str) -> set[str]:
    module = _load(path)
    saved = sys.argv
    sys.argv = [path, "--help"]
    try:
        return _help_options(module.main)
    finally:
        sys.argv = saved


def _glintru_commands() -> list[str]:
    text = cli.build_parser().format_help()
    return re.search(r"\{([a-z,-]+)\}", text).group(1).split(",")


def _glintru_help(command: str) -> set[str]:
    return _help_options(lambda: cli.main([command, "--help"]))


# Scripts whose examples the pages show: those with a parse function parse each example as written;
# the others build their parser inside main, so their examples are held to the options of --help.
PARSED_SCRIPTS = {"analysis/significance.py", "analysis/report.py", "benchmarks/efficiency.py"}
HELP_SCRIPTS = {
    "analysis/compare.py",
    "analysis/reproduction.py",
    "benchmarks/loader.py",
    "benchmarks/search_overhead.py",
}
SEARCH_SCRIPT = "tune/search.py"  # its examples are parsed and checked in tests/search/test_readme_search.py
# Scripts that expose build_parser(): each example is parsed by the parser the script runs.
BUILT_PARSER_SCRIPTS = {"tune/study.py"}


def _argv(command: str) -> list[str]:
    return shlex.split(command)


def test_every_docs_page_is_linked_from_the_readme():
    readme = pages()["README.md"]
    linked = set(re.findall(r"\]\((docs/[^)#\s]+\.md)(?:#[^)]*)?\)", readme))
    unlinked = sorted(name for name in pages() if name.startswith("docs/") and name not in linked)
    assert unlinked == [], f"link these from README.md: {unlinked}"


def test_the_readme_is_a_front_page():
    readme = pages()["README.md"]
    assert len(readme.splitlines()) <= 250, "move the reference text to a docs/ page"
    commands = code_commands(section(readme, "Quickstart"))
    assert commands[:2] == ["make search", "make test"]


@pytest.mark.parametrize("page, command", examples("glintru"), ids=lambda v: v[:90])
def test_glintru_example_parses(page, command):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            cli.build_parser().parse_args(_argv(command)[1:])
    except SystemExit:
        pytest.fail(f"{page}: `{command}` is refused: {err.getvalue().strip()}")


@pytest.mark.parametrize("page, command", examples("python"), ids=lambda v: v[:90])
def test_script_example_parses_or_names_real_flags(page, command):
    words = _argv(command)
    if words[1] == "-m":
        return
    path = words[1]
    assert (REPO / path).is_file(), f"{page}: `{command}` runs {path}, which the repository does not have"
    known = PARSED_SCRIPTS | HELP_SCRIPTS | BUILT_PARSER_SCRIPTS | {SEARCH_SCRIPT}
    assert path in known, f"{page}: teach this test to check {path}"
    if path in PARSED_SCRIPTS | BUILT_PARSER_SCRIPTS:
        module = _load(path)
        parse = module.parse_args if path in PARSED_SCRIPTS else module.build_parser().parse_args
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                parse(words[2:])
        except SystemExit:
            pytest.fail(f"{page}: `{command}` is refused: {err.getvalue().strip()}")
    elif path in HELP_SCRIPTS:
        unknown = {w.split("=", 1)[0] for w in words[2:] if w.startswith("--")} - _script_help(path)
        assert unknown == set(), f"{page}: `{command}`: {path} has no {sorted(unknown)}"


def _make_examples() -> list[tuple[str, str]]:
    inline = [
        (name, span)
        for name, text in pages().items()
        for span in re.findall(r"`(make [^`]+)`", text.replace("\n", " "))
    ]
    return examples("make") + inline


@pytest.mark.parametrize("page, command", _make_examples(), ids=lambda v: v[:90])
def test_make_example_names_a_target_and_its_variables(page, command):
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.MULTILINE))
    variables = set(re.findall(r"^([A-Z_]+)\s*[?:]?=", makefile, re.MULTILINE))
    for word in _argv(command)[1:]:
        if "=" in word:
            assert word.split("=", 1)[0] in variables, f"{page}: `{command}`: the Makefile has no {word}"
        else:
            assert word in targets, f"{page}: `{command}`: the Makefile has no target {word}"


def _known_flags() -> set[str]:
    known = set().union(*(_glintru_help(c) for c in _glintru_commands()))
    known |= _help_options(lambda: _load(SEARCH_SCRIPT).main(["--help"]))
    for path in sorted(PARSED_SCRIPTS | HELP_SCRIPTS):
        known |= _script_help(path)
    return known


def _mentioned_flags(text: str) -> set[str]:
    """Flags of the prose and of our own example commands (not those of ray, docker, pip, ...)."""
    prose = "\n".join(line for line in text.splitlines() if not line.startswith("    "))
    ours = [c for c in code_commands(text) if c.split()[0] in OUR_PROGRAMS]
    return set(FLAG.findall(prose)) | {f for c in ours for f in FLAG.findall(c)}


def test_every_flag_the_pages_mention_exists():
    known = _known_flags() | FOREIGN_FLAGS | {"--help"}
    missing = {name: sorted(_mentioned_flags(text) - known) for name, text in pages().items()}
    assert {name: flags for name, flags in missing.items() if flags} == {}


def test_the_training_page_documents_exactly_the_train_flags():
    flags = set(FLAG.findall(section(pages()["docs/TRAINING.md"], "Flags"))) - {"--help"}
    assert flags == _glintru_help("train")
