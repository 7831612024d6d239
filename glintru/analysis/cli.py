"""The command-line flags that `analysis/report.py` and `analysis/significance.py` share: which
experiments, which metrics, which test, and which trials choose each configuration."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator

from glintru.analysis.tables import PAPER_METRICS

TESTS = ("paired", "welch", "wilcoxon")


def add_selection_arguments(p: argparse.ArgumentParser, test_help: str) -> None:
    """EXP_DIR..., --metric, --test, --alpha, --select, --only, --reference."""
    p.add_argument(
        "experiments",
        nargs="+",
        metavar="EXP_DIR",
        help="experiment dirs (trials.parquet) or run dirs (metrics.json); local paths or URIs (s3://...)",
    )
    p.add_argument(
        "--metric",
        action="append",
        metavar="NAME",
        help=f"test metric(s), repeatable or comma-separated (default {','.join(PAPER_METRICS)})",
    )
    p.add_argument("--test", choices=TESTS, default="paired", help=test_help)
    p.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm-Bonferroni")
    p.add_argument(
        "--select",
        metavar="COLUMN",
        help="validation column that chooses each configuration (default: the one the experiments and runs "
        "record they selected on, e.g. valid/ndcg@10)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="keep trials with this value, e.g. config/ablation=full (trials without the column stay)",
    )
    p.add_argument("--reference", metavar="MODEL", help="show Improv. only where this model (e.g. glintru) is best")


@contextlib.contextmanager
def warnings_on_stderr() -> Iterator[None]:
    """The library's warnings (e.g. an input without a dataset fingerprint) as `warning: ...` lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    logger = logging.getLogger("glintru")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def split_list(values: list[str] | None) -> list[str] | None:
    """Repeatable, comma-separated flag values as one list (None when none were given)."""
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]
