"""Write report/report.md and report/report.html with every table and figure of some experiments."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

try:
    import glintru  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glintru.analysis import Results, SignificanceError, collect
from glintru.analysis.cli import add_selection_arguments, split_list, warnings_on_stderr
from glintru.analysis.collect import parse_conditions
from glintru.analysis.report import ReportOptions, write_report
from glintru.analysis.tables import PAPER_METRICS
from glintru.outputs import REPORT, check_output, locked, mark, replace_dir


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    add_selection_arguments(p, test_help="test behind the table's marks; the other two are reported as checks")
    p.add_argument(
        "--out", default="report", help="output directory (default report/); an earlier report there is replaced whole"
    )
    p.add_argument(
        "--ablation",
        action="append",
        default=[],
        metavar="COLUMN",
        help="add an ablation table over this column (e.g. config/gate_activation); repeatable",
    )
    p.add_argument(
        "--top",
        type=positive_int,
        default=5,
        help="best configurations listed per model and dataset of a search (default 5)",
    )
    p.add_argument("--title", default="glintru report", help="heading of report.md and report.html")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    metrics = split_list(args.metric) or list(PAPER_METRICS)
    options = ReportOptions(
        metrics=metrics,
        select=args.select,
        test=args.test,
        alpha=args.alpha,
        reference=args.reference,
        ablations=args.ablation,
        title=args.title,
        top=args.top,
    )
    out = Path(args.out)
    try:
        check_out(out, args.experiments)
        with warnings_on_stderr():
            results = collect(args.experiments).only(parse_conditions(args.only))
        for column in args.ablation:  # a typo here would otherwise only show as a note inside the report
            if column not in results.trials.columns:
                raise ValueError(
                    f"--ablation {column}: no such column in the trials; config columns: "
                    f"{', '.join(c for c in results.trials.columns if c.startswith('config/'))}"
                )
        paths = write_report_atomically(results, out, options, args.experiments)
    except (SignificanceError, FileNotFoundError, KeyError, ValueError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: --out {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(paths["html"])
    print(paths["markdown"])
    return 0


def check_out(out: Path, experiments: list[str]) -> Path:
    """Refuse, before any work, an --out that is a file, one of the experiments read or a folder
    holding one, or a directory that is not an earlier report (glintru.outputs); returns it resolved."""
    inputs = [("experiment", e) for e in experiments if "://" not in e]
    return check_output(out, REPORT, inputs=inputs, replace=True)


def write_report_atomically(
    results: Results, out: Path, options: ReportOptions, experiments: list[str]
) -> dict[str, Path]:
    """Write the report in a temporary sibling and swap it for --out when complete, under the lock of
    --out, so a failure halfway leaves --out as it was (an earlier report is replaced whole, never
    mixed with the new one)."""
    with locked(out):
        real = check_out(out, experiments)  # again: another command may have written it meanwhile
        tmp = Path(tempfile.mkdtemp(prefix=f".{real.name}.tmp-", dir=real.parent))
        try:
            paths = write_report(results, tmp, options)
            mark(tmp, REPORT)
            replace_dir(tmp, real)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return {key: out / path.relative_to(tmp) for key, path in paths.items()}


if __name__ == "__main__":
    sys.exit(main())
