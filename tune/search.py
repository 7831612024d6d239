"""Hyperparameter search on Ray: `python tune/search.py --space glintru --data DIR` (the same as
`glintru search`; the command line lives in glintru/search/cli.py).

Prints Tune's progress, a table of the best trials and, on its last line, the experiment directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import glintru  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glintru.search import cli
from glintru.search.cli import build_parser, parse_grid, parse_value, settings_from_args, typed_settings

__all__ = ["build_parser", "main", "parse_grid", "parse_value", "settings_from_args", "typed_settings"]

COMMAND = "python tune/search.py"  # what an interrupted search's --resume line repeats


def main(argv: list[str] | None = None) -> int:
    return cli.main(argv, command=COMMAND)


if __name__ == "__main__":
    sys.exit(main())
