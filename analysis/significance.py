"""Print the Table 2-style significance table of experiment or run directories (md, latex or csv);
the same as `glintru significance` (the command lives in glintru/analysis/cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import glintru  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glintru.analysis.cli import significance_args, significance_main, write_atomically

__all__ = ["main", "parse_args", "write_atomically"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return significance_args(argv)


def main(argv: list[str] | None = None) -> int:
    return significance_main(argv)


if __name__ == "__main__":
    sys.exit(main())
