"""Write report/report.md and report/report.html with every table and figure of some experiments; the
same as `glintru report` (the command lives in glintru/analysis/cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import glintru  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glintru.analysis.cli import check_report_out as check_out
from glintru.analysis.cli import positive_int, report_args, report_main, write_report_atomically

__all__ = ["check_out", "main", "parse_args", "positive_int", "write_report_atomically"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return report_args(argv)


def main(argv: list[str] | None = None) -> int:
    return report_main(argv)


if __name__ == "__main__":
    sys.exit(main())
