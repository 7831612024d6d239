"""One of the paper's studies of GLINT-RU as one command: `python tune/study.py activations --data DIR
--preset beauty` (the same as `glintru study`; the command line lives in glintru/search/cli.py). The
study's grid runs with every seed (a search under tune/search.py's machinery); the same command
resumes it after an interruption, and writes its table and report when it is done.

`python tune/study.py list` prints the studies.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import glintru  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glintru.search import cli
from glintru.search.cli import build_study_parser as build_parser
from glintru.search.cli import format_studies

__all__ = ["build_parser", "format_studies", "main"]


def main(argv: list[str] | None = None) -> int:
    return cli.study_main(argv, command="python tune/study.py")


if __name__ == "__main__":
    sys.exit(main())
