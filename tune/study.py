"""One of the paper's studies of GLINT-RU as one command: `python tune/study.py activations --data DIR
--preset beauty`. The study's grid runs with every seed (a search under tune/search.py's machinery);
the same command resumes it after an interruption, and writes its table and report when it is done.

`python tune/study.py list` prints the studies.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a source checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glintru.search.settings import SearchError, SearchInterrupted  # noqa: E402
from glintru.search.studies import STUDIES, StudyRun, get_study  # noqa: E402
from glintru.settings import parse_settings, parse_value  # noqa: E402

DEFAULT_RUN = StudyRun(study=next(iter(STUDIES.values())), data="")


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects integers separated by commas (0,1,2), got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    d = DEFAULT_RUN
    p = argparse.ArgumentParser(
        prog="tune/study.py",
        description="Run one of the paper's GLINT-RU studies (a grid over one setting, every seed, one epoch "
        "budget for every row), resume it with the same command, and write its table and report.",
    )
    p.add_argument("study", help=f"{', '.join(STUDIES)}, or list")
    p.add_argument("--data", help="prepared dataset directory (glintru prepare)")
    p.add_argument("--preset", help="dataset preset of Table 5: ml-1m, beauty, video-games")
    p.add_argument("--seeds", type=_seeds, default=d.seeds, help="seeds of every row (default 0,1,2)")
    p.add_argument(
        "--max-epochs",
        type=int,
        default=d.max_epochs,
        help=f"epochs per run at most, early stopping on validation within it (default {d.max_epochs})",
    )
    p.add_argument("--eval-mode", default=d.eval_mode, help=f"evaluation protocol (default {d.eval_mode})")
    p.add_argument("--values", help="a subset of the study's values, e.g. 1,3,5 (must include the reference)")
    p.add_argument(
        "--set",
        nargs="+",
        action="extend",
        metavar="KEY=VALUE",
        default=[],
        dest="overrides",
        help="fixed settings for every row, e.g. num_threads=1",
    )
    p.add_argument("--storage", default=d.storage, help=f"results root (default {d.storage})")
    p.add_argument("--name", help="experiment name (default study-STUDY-DATASET)")
    p.add_argument("--cpus-per-trial", type=float, default=d.cpus_per_trial, help="CPUs per run (default 1)")
    p.add_argument("--max-concurrent", type=int, help="runs at once (default: as many as resources fit)")
    p.add_argument("--num-cpus", type=int, help="embedded Ray: logical CPUs (default: all cores)")
    p.add_argument("--report", help="report directory (default EXP_DIR/report)")
    return p


def format_studies() -> str:
    lines = []
    for s in STUDIES.values():
        values = ", ".join(map(str, s.values))
        lines.append(f"{s.name}: {s.title.lower()}, {s.key} in {{{values}}}, tested against {s.key}={s.reference}")
        lines.append(f"    paper: {s.claim}" + (f" ({s.paper_source})" if s.paper_source else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.study == "list":
        print(format_studies())
        return 0
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("glintru")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        from glintru.search.studies import run_study

        if args.data is None:
            raise SearchError("--data is required: a prepared dataset directory")
        study = get_study(args.study)
        values = None if args.values is None else tuple(parse_value(v) for v in args.values.split(",") if v.strip())
        run = StudyRun(
            study=study,
            data=args.data,
            preset=args.preset,
            seeds=args.seeds,
            max_epochs=args.max_epochs,
            eval_mode=args.eval_mode,
            storage=args.storage,
            name=args.name,
            overrides=parse_settings(args.overrides, "--set"),
            cpus_per_trial=args.cpus_per_trial,
            max_concurrent=args.max_concurrent,
            num_cpus=args.num_cpus,
            values=values,
        )
        exp_dir, table = run_study(run, report=args.report)
    except (SearchError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SearchInterrupted as e:
        print(f"interrupted: {e}\nthe same command resumes the study", file=sys.stderr)
        return 130
    finally:
        logger.removeHandler(handler)
    print(table)
    print(exp_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
