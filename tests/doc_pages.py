"""The documentation the tests hold to the code: README.md and every docs/*.md page, and the example
commands of their indented code blocks."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pages() -> dict[str, str]:
    """README.md, then every docs/*.md page, by their paths from the repository root."""
    paths = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    return {path.relative_to(REPO).as_posix(): path.read_text() for path in paths}


def section(text: str, title: str) -> str:
    """The `## title` section of a page, up to the next `## ` heading."""
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def code_commands(text: str) -> list[str]:
    """Commands of the indented code blocks: continuation lines joined, comments dropped, and a
    `for v in a b; do ... $v ...; done` loop unrolled."""
    joined = re.sub(r"\\\n\s*", "", text)
    commands: list[str] = []
    loop: tuple[str, list[str]] | None = None
    for line in joined.splitlines():
        if not line.startswith("    "):
            continue
        stripped = line.strip()
        if match := re.fullmatch(r"for (\w+) in ([^;]+); do", stripped):
            loop = (match.group(1), match.group(2).split())
            continue
        if stripped == "done":
            loop = None
            continue
        command = "" if stripped.startswith("#") else stripped.split("  #", 1)[0].strip()
        if not command:
            continue
        if loop and f"${loop[0]}" in command:
            commands += [command.replace(f"${loop[0]}", value) for value in loop[1]]
        else:
            commands.append(command)
    return commands


def examples(prefix: str) -> list[tuple[str, str]]:
    """(page, command) for every example command of every page that starts with `prefix`."""
    return [
        (name, command)
        for name, text in pages().items()
        for command in code_commands(text)
        if command == prefix or command.startswith(prefix + " ")
    ]
