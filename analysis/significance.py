"""Print the Table 2-style significance table of experiment or run directories (md, latex or csv)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

try:
    import glintru  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glintru.analysis import SignificanceError, ablation_table, collect, performance_table
from glintru.analysis.cli import add_selection_arguments, split_list, warnings_on_stderr
from glintru.analysis.collect import parse_conditions
from glintru.analysis.tables import PAPER_METRICS, frame_layout, render_csv, render_latex, render_markdown


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    metrics = split_list(args.metric) or list(PAPER_METRICS)
    try:
        with warnings_on_stderr():
            results = collect(args.experiments).only(parse_conditions(args.only))
        common = dict(select=args.select, test=args.test, alpha=args.alpha, datasets=split_list(args.datasets))
        if args.ablation:
            table = ablation_table(results, args.ablation, metrics, order=split_list(args.models), **common)
        else:
            table = performance_table(
                results, metrics, rows=split_list(args.models), reference=args.reference, **common
            )
    except (SignificanceError, FileNotFoundError, KeyError, ValueError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        return 2
    text = table.render(args.format)
    if args.comparisons and not table.comparisons.empty:
        layout = frame_layout(table.comparisons.drop(columns=["a", "b", "test"]))
        render = {"md": render_markdown, "latex": render_latex, "csv": render_csv}[args.format]
        text += "\n" + render(layout)
    if args.out:
        try:
            write_atomically(Path(args.out), text)
        except OSError as e:
            print(f"error: --out {args.out}: {e.strerror or e}", file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)
    return 0


def write_atomically(path: Path, text: str) -> None:
    """Write through a temporary sibling and rename it into place: a failure leaves no half a table."""
    if path.is_dir():
        raise IsADirectoryError(0, "is a directory; give a file name such as table2.md")
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise NotADirectoryError(0, f"{blocker} is a file, not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


if __name__ == "__main__":
    sys.exit(main())
