"""`glintru significance` and `glintru report` (also `python analysis/significance.py` and
`python analysis/report.py`): the flags they share (which experiments, which metrics, which test, and
which trials choose each configuration), their parsers, and the commands."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from glintru.analysis.tables import PAPER_METRICS
from glintru.command import OK, run_command
from glintru.outputs import REPORT, check_output, locked, mark, replace_dir

if TYPE_CHECKING:
    from glintru.analysis import Results
    from glintru.analysis.report import ReportOptions

TESTS = ("paired", "welch", "wilcoxon")
WARNING_FORMAT = "warning: %(message)s"  # the library's warnings as the analysis commands show them
# a user's mistakes in the analysis commands: SignificanceError and ComparabilityError are ValueErrors;
# a KeyError names an unknown column or model
ANALYSIS_ERRORS = (ValueError, KeyError, FileNotFoundError)


def validation_column(text: str) -> str:
    """--select's value: a validation column; choosing on test metrics would report a selected score."""
    if not text.startswith("valid/"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a validation column: configurations are chosen on valid/... (e.g. valid/ndcg@10), "
            "and test metrics are only reported"
        )
    return text


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
        type=validation_column,
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
    handler.setFormatter(logging.Formatter(WARNING_FORMAT))
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


# -- significance --------------------------------------------------------------------------------

SIGNIFICANCE_DESCRIPTION = (
    "Print the Table 2-style significance table of experiment or run directories (md, latex or csv)."
)


def add_significance_arguments(p: argparse.ArgumentParser) -> None:
    add_selection_arguments(
        p, test_help="paired t over users (default), Welch t over seeds, or Wilcoxon signed-rank over users"
    )
    p.add_argument("--format", choices=("md", "latex", "csv"), default="md")
    p.add_argument("--models", action="append", metavar="NAMES", help="row order / subset, comma-separated")
    p.add_argument("--datasets", action="append", metavar="NAMES", help="column order / subset, comma-separated")
    p.add_argument(
        "--ablation",
        metavar="COLUMN",
        help="rows are the values of this column (e.g. config/gate_activation) instead of models",
    )
    p.add_argument("--comparisons", action="store_true", help="also print every comparison (diff, CI, effect, p)")
    p.add_argument("--out", metavar="FILE", help="write here instead of stdout")


def significance_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=SIGNIFICANCE_DESCRIPTION)
    add_significance_arguments(p)
    return p.parse_args(argv)


def significance(args: argparse.Namespace) -> int:
    """The significance table of parsed flags, on stdout or in --out."""
    from glintru.analysis import ablation_table, collect, performance_table
    from glintru.analysis.collect import parse_conditions
    from glintru.analysis.tables import frame_layout, render_csv, render_latex, render_markdown

    metrics = split_list(args.metric) or list(PAPER_METRICS)
    check_file_outputs({"--out": args.out}, args.experiments, example="table2.md")
    results = collect(args.experiments).only(parse_conditions(args.only))
    common = dict(select=args.select, test=args.test, alpha=args.alpha, datasets=split_list(args.datasets))
    if args.ablation:
        table = ablation_table(results, args.ablation, metrics, order=split_list(args.models), **common)
    else:
        table = performance_table(results, metrics, rows=split_list(args.models), reference=args.reference, **common)
    text = table.render(args.format)
    if args.comparisons and not table.comparisons.empty:
        layout = frame_layout(table.comparisons.drop(columns=["a", "b", "test"]))
        render = {"md": render_markdown, "latex": render_latex, "csv": render_csv}[args.format]
        text += "\n" + render(layout)
    if args.out:
        write_output(Path(args.out), "--out", text)
    else:
        sys.stdout.write(text)
    return OK


def significance_main(argv: list[str] | None = None, *, command: str | None = None) -> int:
    """`command`: how the user runs it (`glintru significance`; None: the script's name)."""
    args = significance_args(argv, command)
    return run_command(lambda: significance(args), errors=ANALYSIS_ERRORS, level=logging.WARNING, fmt=WARNING_FORMAT)


def check_file_outputs(
    outputs: dict[str, str | os.PathLike | None], inputs: Sequence[str | os.PathLike], example: str = "table.md"
) -> None:
    """Refuse, before any work, an output file (flag -> path; None: not given) that is a directory,
    another flag's file, a place inside an input, or a place inside any glintru output (a run, a
    dataset, an experiment, a report): writing there could replace a file the command reads (a run's
    metrics.json, an experiment's trials.parquet) or one that another command wrote and reads."""
    from glintru.outputs import KINDS, output_around, resolve

    given = {flag: path for flag, path in outputs.items() if path is not None}
    real = {flag: resolve(path, flag) for flag, path in given.items()}
    seen: dict[Path, str] = {}
    for flag, path in real.items():
        if path in seen:
            raise ValueError(f"{seen[path]} and {flag} name one file, {given[flag]}; give each its own")
        seen[path] = flag
    sources = [(str(i), resolve(i, "input")) for i in inputs if "://" not in str(i)]
    for flag, path in real.items():
        if path.is_dir():
            raise ValueError(f"{flag} {given[flag]} is a directory; give a file name such as {example}")
        for name, source in sources:
            if path == source or source in path.parents:
                raise ValueError(
                    f"{flag} {given[flag]} is inside the input {name}, which this command reads; write it outside "
                    "the inputs"
                )
        around = output_around(path)
        if around is not None:
            kind, directory = around
            raise ValueError(
                f"{flag} {given[flag]} is inside {KINDS[kind]}, {directory}, whose files its own command writes; "
                "write it outside"
            )


def write_atomically(path: Path, text: str) -> None:
    """Write through a temporary sibling and rename it into place: a failure leaves no half a table."""
    if path.is_dir():
        raise IsADirectoryError(0, "is a directory; give a file name such as table2.md")
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise NotADirectoryError(0, f"{blocker} is a file, not a directory")
    from glintru.outputs import file_mode

    path.parent.mkdir(parents=True, exist_ok=True)
    mode = file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_output(path: Path, flag: str, text: str) -> None:
    """write_atomically, with a failure told as the flag's error (ValueError)."""
    try:
        write_atomically(path, text)
    except OSError as e:
        raise ValueError(f"{flag} {path}: {e.strerror or e}") from None


# -- report --------------------------------------------------------------------------------------

REPORT_DESCRIPTION = "Write report/report.md and report/report.html with every table and figure of some experiments."


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_report_arguments(p: argparse.ArgumentParser) -> None:
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


def report_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=REPORT_DESCRIPTION)
    add_report_arguments(p)
    return p.parse_args(argv)


def report(args: argparse.Namespace) -> int:
    """The report of parsed flags, written whole into --out or not at all."""
    from glintru.analysis import collect
    from glintru.analysis.collect import parse_conditions
    from glintru.analysis.report import ReportOptions

    options = ReportOptions(
        metrics=split_list(args.metric) or list(PAPER_METRICS),
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
        check_report_out(out, args.experiments)
        results = collect(args.experiments).only(parse_conditions(args.only))
        for column in args.ablation:  # a typo here would otherwise only show as a note inside the report
            if column not in results.trials.columns:
                raise ValueError(
                    f"--ablation {column}: no such column in the trials; config columns: "
                    f"{', '.join(c for c in results.trials.columns if c.startswith('config/'))}"
                )
        paths = write_report_atomically(results, out, options, args.experiments)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ValueError(f"--out {out}: {e.strerror or e}") from None
    print(paths["html"])
    print(paths["markdown"])
    return OK


def report_main(argv: list[str] | None = None, *, command: str | None = None) -> int:
    """`command`: how the user runs it (`glintru report`; None: the script's name)."""
    args = report_args(argv, command)
    return run_command(lambda: report(args), errors=ANALYSIS_ERRORS, level=logging.WARNING, fmt=WARNING_FORMAT)


def check_report_out(out: Path, experiments: list[str], flag: str = "--out") -> Path:
    """Refuse, before any work, an --out (`flag`) that is a file, one of the experiments read or a
    folder holding one, or a directory that is not an earlier report (glintru.outputs); returns it
    resolved."""
    inputs = [("experiment", e) for e in experiments if "://" not in e]
    return check_output(out, REPORT, inputs=inputs, replace=True, flag=flag)


def write_report_atomically(
    results: Results, out: Path, options: ReportOptions, experiments: list[str], flag: str = "--out"
) -> dict[str, Path]:
    """Write the report in a temporary sibling and swap it for --out when complete, under the lock of
    --out, so a failure halfway leaves --out as it was (an earlier report is replaced whole, never
    mixed with the new one)."""
    from glintru.analysis.report import write_report

    with locked(out, flag=flag):
        real = check_report_out(out, experiments, flag)  # again: another command may have written it meanwhile
        tmp = Path(tempfile.mkdtemp(prefix=f".{real.name}.tmp-", dir=real.parent))
        try:
            paths = write_report(results, tmp, options)
            mark(tmp, REPORT)
            replace_dir(tmp, real)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return {key: out / path.relative_to(tmp) for key, path in paths.items()}
