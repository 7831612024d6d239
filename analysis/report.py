"""Write report/report.md and report/report.html with every table and figure of some experiments."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import glintru  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glintru.analysis import SignificanceError, collect
from glintru.analysis.collect import parse_conditions
from glintru.analysis.report import ReportOptions, write_report
from glintru.analysis.tables import PAPER_METRICS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("experiments", nargs="+", metavar="EXP_DIR",
                   help="experiment dirs (trials.parquet) or run dirs (metrics.json); local paths or URIs (s3://...)")
    p.add_argument("--out", default="report", help="output directory (default report/)")
    p.add_argument("--metric", action="append", metavar="NAME",
                   help=f"test metric(s), repeatable or comma-separated (default {','.join(PAPER_METRICS)})")
    p.add_argument("--test", choices=("paired", "welch", "wilcoxon"), default="paired",
                   help="test behind the table's marks; the other two are reported as checks")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--select", default="valid/ndcg@10", help="validation column that chooses each configuration")
    p.add_argument("--only", action="append", default=[], metavar="COLUMN=VALUE",
                   help="keep trials with this value, e.g. config/ablation=full (trials without the column stay)")
    p.add_argument("--reference", metavar="MODEL", help="show Improv. only where this model (e.g. glintru) is best")
    p.add_argument("--ablation", action="append", default=[], metavar="COLUMN",
                   help="add an ablation table over this column (e.g. config/gate_activation); repeatable")
    p.add_argument("--top", type=int, default=5, help="best configurations listed per model and dataset")
    p.add_argument("--title", default="glintru report")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    metrics = [m.strip() for item in (args.metric or [",".join(PAPER_METRICS)]) for m in item.split(",") if m.strip()]
    options = ReportOptions(metrics=metrics, select=args.select, test=args.test, alpha=args.alpha,
                            reference=args.reference, ablations=args.ablation, title=args.title, top=args.top)
    try:
        paths = write_report(collect(args.experiments).only(parse_conditions(args.only)), args.out, options)
    except (SignificanceError, FileNotFoundError, KeyError, ValueError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(paths["html"])
    print(paths["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
