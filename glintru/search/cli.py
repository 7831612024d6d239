"""`glintru search` (and `python tune/search.py`): the search's flags, read into SearchSettings, and
the command that runs it."""

from __future__ import annotations

import argparse
import copy
import logging
import shlex
import sys
from dataclasses import fields

from glintru.command import OK, run_command
from glintru.search import objectives
from glintru.search import settings as search_settings
from glintru.search.console import summary
from glintru.search.objectives import COSTS, DEFAULT_OBJECTIVE
from glintru.search.settings import SearchError, SearchInterrupted, SearchSettings
from glintru.search.spaces import SPACES, format_spaces
from glintru.settings import parse_settings, parse_value, split_pairs

__all__ = ["add_arguments", "build_parser", "main", "parse_value", "settings_from_args", "typed_settings"]

# the settings whose flag gives the value itself (space and data are required, grid and overrides
# are KEY=VALUE words that settings_from_args parses)
FLAG_DEFAULTS = tuple(f.name for f in fields(SearchSettings) if f.name not in ("space", "data", "grid", "overrides"))
DESCRIPTION = (
    "Search hyperparameters of GLINT-RU or a baseline with Ray Tune + Optuna; a trial trains in its Tune "
    "trainable, or on Ray Train DDP workers with --workers-per-trial > 1. Results land in STORAGE/NAME. "
    "Every setting is checked before Ray starts."
)


def _seeds(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects integers separated by commas (0,1,2), got {text!r}") from None


def _alternatives(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}"


def parse_grid(items: list[str]) -> dict[str, list]:
    """`--grid lr=1e-3,1e-2 ablation=full,no_gru` (one flag or several) -> {key: [values]}; a key
    listed twice is an error, never silently dropped."""
    grid: dict[str, list] = {}
    for key, values in split_pairs(items, "--grid"):
        if key in grid:
            raise ValueError(f"--grid lists {key!r} twice; give all its values once: {key}=V1,V2,...")
        grid[key] = [parse_value(v) for v in values.split(",") if v.strip() != ""]
    return grid


def build_parser(prog: str = "tune/search.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The search's flags, on its own parser or on `glintru search`'s. Defaults and choices are read
    where they are defined (SearchSettings, SCHEDULERS, the samplers of objectives.py), when the
    parser is built."""
    d = search_settings.DEFAULTS
    single, multi = objectives.SINGLE_SAMPLERS, objectives.MULTI_SAMPLERS
    p.add_argument("--space", help=f"search space: {', '.join(SPACES)}; `--space list` prints their ranges")
    p.add_argument("--data", help="prepared dataset directory (glintru prepare / glintru synthetic)")
    p.add_argument(
        "--num-samples",
        type=int,
        default=d.num_samples,
        help=f"Optuna trials (default {d.num_samples}; not with --grid)",
    )
    p.add_argument(
        "--max-epochs", type=int, default=d.max_epochs, help=f"epochs per trial at most (default {d.max_epochs})"
    )
    p.add_argument(
        "--scheduler",
        choices=search_settings.SCHEDULERS,
        help="early stopping of trials: asha (default for a search) or fifo (default for --grid "
        "and with several objectives; asha then watches the first)",
    )
    p.add_argument(
        "--objective",
        default=d.objective,
        metavar="M1[:max|min],M2,...",
        help=f"what the search optimises (default {DEFAULT_OBJECTIVE}): a validation metric, or "
        f"several for a multi-objective search with a Pareto front, e.g. ndcg@10,infer_ms; "
        f"costs: {', '.join(COSTS)} (minimised); the first must be a ranking metric",
    )
    p.add_argument(
        "--sampler",
        choices=tuple(dict.fromkeys(single + multi)),
        help=f"Optuna sampler: {_alternatives(single)} for one objective; {_alternatives(multi)} for several "
        f"(default {objectives.check_sampler(None, 1)})",
    )
    p.add_argument(
        "--grid",
        nargs="+",
        action="extend",
        metavar="KEY=V1,V2",
        default=[],
        help="grid mode (no Optuna): every combination of the listed values; several keys after "
        "one flag or the flag repeated",
    )
    p.add_argument(
        "--seeds",
        type=_seeds,
        default=[],
        help="e.g. 0,1,2,3,4: rerun the --top-k best configurations with these seeds "
        "(with --grid: run every combination with each seed)",
    )
    p.add_argument("--top-k", type=int, default=d.top_k, help=f"configurations rerun by --seeds (default {d.top_k})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed of the sampler and of the trials (default {d.seed})")
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        help="GPUs per trial; fractions share a GPU (0.25: four trials per GPU); default: without "
        "--address, one per worker (W with --workers-per-trial W) when this machine has that "
        "many GPUs, else 0; with --address 0",
    )
    p.add_argument(
        "--workers-per-trial",
        type=int,
        default=d.workers_per_trial,
        help=f"Ray Train (DDP) workers per trial (default {d.workers_per_trial})",
    )
    p.add_argument(
        "--cpus-per-trial",
        type=float,
        default=d.cpus_per_trial,
        help=f"CPUs per trial, split over its workers (default {d.cpus_per_trial:g})",
    )
    p.add_argument("--address", help="join a running Ray cluster: auto or HOST:PORT (default: embedded Ray)")
    p.add_argument(
        "--storage",
        default=d.storage,
        help=f"results root: a path or s3://... (default {d.storage}); with --address, cloud "
        f"storage or a shared (NFS) path",
    )
    p.add_argument(
        "--shared-storage",
        action="store_true",
        help="with --address: accept a local --storage path as reachable from every node (a "
        "cluster on one machine, or a shared filesystem the check does not recognise)",
    )
    p.add_argument("--name", help="experiment name (default SPACE-DATASET-TIMESTAMP)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted experiment (--name, --storage)")
    p.add_argument("--retry-errored", action="store_true", help="with --resume: run errored trials again")
    p.add_argument(
        "--eval-mode",
        default=d.eval_mode,
        help=f"full, uniN, popN or popN-recbole (e.g. pop100); default {d.eval_mode}",
    )
    p.add_argument("--preset", help="dataset preset of Table 5: ml-1m, beauty, video-games")
    p.add_argument(
        "--set",
        nargs="+",
        action="extend",
        metavar="KEY=VALUE",
        default=[],
        dest="overrides",
        help="fixed model or training settings for every trial, e.g. max_length=50 patience=5; "
        "several pairs after one flag or the flag repeated",
    )
    p.add_argument(
        "--grace-period",
        type=int,
        default=d.grace_period,
        help=f"ASHA: epochs before a trial can stop (default {d.grace_period})",
    )
    p.add_argument(
        "--reduction-factor",
        type=int,
        default=d.reduction_factor,
        help=f"ASHA: keep 1/N at each rung (default {d.reduction_factor})",
    )
    p.add_argument(
        "--max-failures",
        type=int,
        default=d.max_failures,
        help=f"retries of a trial after a failure (default {d.max_failures})",
    )
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as resources fit)")
    p.add_argument("--num-cpus", type=int, help="embedded Ray: logical CPUs (default: all cores)")
    p.add_argument("--num-gpus", type=int, help="embedded Ray: GPUs (default: all visible)")
    p.add_argument(
        "--mlflow",
        nargs="?",
        const="",
        metavar="TRACKING_URI",
        help="log trials to MLflow (needs `pip install mlflow`)",
    )
    p.add_argument(
        "--optuna-storage",
        metavar="URL|FILE",
        help="Optuna study storage: an RDB URL (sqlite:///study.db) or a journal file ending in "
        ".journal or .log (default EXP_DIR/optuna.journal)",
    )
    p.add_argument(
        "--verbose",
        type=int,
        default=d.verbose,
        choices=[0, 1, 2, 3],
        help=f"console output (default {d.verbose}: Tune's progress table and a line per ended trial; 0 quiet; "
        f"2 adds Tune's boxes of each trial's config and result and the trials' INFO logs; 3 a box per epoch)",
    )
    # every flag of a setting starts at the setting's default, those whose help names none too (a
    # list copied: the settings a command line builds never share one with DEFAULTS)
    p.set_defaults(**{name: copy.copy(getattr(d, name)) for name in FLAG_DEFAULTS})


def settings_from_args(args: argparse.Namespace) -> SearchSettings:
    """The settings as given; SearchError for a missing or malformed one (each checked in full by
    glintru.search.settings.validate_settings)."""
    if args.space is None and not args.resume:
        raise SearchError("--space is required (see `--space list`)")
    if args.data is None and not args.resume:
        raise SearchError("--data is required: a prepared dataset directory")
    try:
        grid = parse_grid(args.grid)
        overrides = parse_settings(args.overrides, "--set")
    except ValueError as e:
        raise SearchError(str(e)) from None
    parsed = {"space": args.space or "", "data": args.data or "", "grid": grid, "overrides": overrides}
    # Every other field is the flag of the same name: a field without a flag fails here, loudly.
    return SearchSettings(**{f.name: parsed.get(f.name, getattr(args, f.name)) for f in fields(SearchSettings)})


def typed_settings(argv: list[str]) -> set[str]:
    """The settings whose flags `argv` types, whatever their values. argparse fills in defaults only
    where the namespace lacks an attribute, so a namespace preset with a marker per setting keeps
    the marker exactly where no flag was typed (a list where a flag extends a list)."""
    parser = build_parser()
    markers = {key: [] if isinstance(value, list) else object() for key, value in vars(parser.parse_args([])).items()}
    parsed = vars(parser.parse_args(argv, namespace=argparse.Namespace(**markers)))
    return {key for key, value in parsed.items() if value is not markers[key]}


def main(argv: list[str] | None = None, *, command: str = "glintru search") -> int:
    """The search as a command line. `command`: how the user runs it (`glintru search`, `python
    tune/search.py`), which the --resume command of an interrupted search repeats."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(command.removeprefix("python ")).parse_args(argv)
    if args.space == "list":
        print(format_spaces())
        return OK

    def search() -> int:
        from glintru.search.runner import run_search

        exp_dir = run_search(settings_from_args(args), typed=typed_settings(argv), command=shlex.split(command))
        print()
        print(summary(exp_dir))
        print(exp_dir)
        return OK

    # the library logs its progress (the plan, each phase), shown on stderr beside Tune's output
    return run_command(
        search,
        errors=(SearchError,),
        level=logging.INFO if args.verbose >= 1 else logging.WARNING,
        interrupted=(SearchInterrupted,),
        stopped_early="interrupted before the search started",
    )


# -- `glintru study` (and `python tune/study.py`): one of the paper's studies as one command --------

STUDY_DESCRIPTION = (
    "Run one of the paper's GLINT-RU studies (a grid over one setting, every seed, one epoch budget for "
    "every row), resume it with the same command, and write its table and report."
)


def _study_seeds(text: str) -> tuple[int, ...]:
    return tuple(_seeds(text))


def build_study_parser(prog: str = "tune/study.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=STUDY_DESCRIPTION)
    add_study_arguments(p)
    return p


def add_study_arguments(p: argparse.ArgumentParser) -> None:
    """The study's flags, on its own parser or on `glintru study`'s."""
    from glintru.search.studies import STUDIES, StudyRun

    d = StudyRun(study=next(iter(STUDIES.values())), data="")
    p.add_argument("study", help=f"{', '.join(STUDIES)}, or list")
    p.add_argument("--data", help="prepared dataset directory (glintru prepare)")
    p.add_argument("--preset", help="dataset preset of Table 5: ml-1m, beauty, video-games")
    p.add_argument(
        "--seeds",
        type=_study_seeds,
        default=d.seeds,
        help=f"seeds of every row (default {','.join(map(str, d.seeds))})",
    )
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
    p.add_argument(
        "--cpus-per-trial", type=float, default=d.cpus_per_trial, help=f"CPUs per run (default {d.cpus_per_trial:g})"
    )
    p.add_argument("--max-concurrent", type=int, help="runs at once (default: as many as resources fit)")
    p.add_argument("--num-cpus", type=int, help="embedded Ray: logical CPUs (default: all cores)")
    p.add_argument("--report", help="report directory (default EXP_DIR/report)")
    p.add_argument(
        "--retry-errored",
        action="store_true",
        help="run the errored runs of the study's experiment again (after their cause is fixed)",
    )


def format_studies() -> str:
    from glintru.search.studies import STUDIES

    lines = []
    for s in STUDIES.values():
        values = ", ".join(map(str, s.values))
        lines.append(f"{s.name}: {s.title.lower()}, {s.key} in {{{values}}}, tested against {s.key}={s.reference}")
        lines.append(f"    paper: {s.claim}" + (f" ({s.paper_source})" if s.paper_source else ""))
    return "\n".join(lines)


def study_main(argv: list[str] | None = None, *, command: str = "glintru study") -> int:
    """A study as a command line; `command`: how the user runs it (`glintru study`, `python tune/study.py`)."""
    args = build_study_parser(command.removeprefix("python ")).parse_args(argv)
    if args.study == "list":
        print(format_studies())
        return OK

    def study() -> int:
        from glintru.search.studies import StudyRun, get_study, run_study

        if args.data is None:
            raise SearchError("--data is required: a prepared dataset directory")
        values = None if args.values is None else tuple(parse_value(v) for v in args.values.split(",") if v.strip())
        run = StudyRun(
            study=get_study(args.study),
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
            retry_errored=args.retry_errored,
        )
        typed = sys.argv[1:] if argv is None else argv
        line = shlex.join([*shlex.split(command), *typed])
        exp_dir, table, errored = run_study(run, report=args.report, command_line=line)
        print(table)
        if errored:
            retry = line if args.retry_errored else shlex.join([*shlex.split(command), *typed, "--retry-errored"])
            print("the table leaves out errored runs:", *(f"  {e}" for e in errored), sep="\n", file=sys.stderr)
            print(f"once their cause is fixed, run them again with:\n  {retry}", file=sys.stderr)
        print(exp_dir)
        return OK

    return run_command(study, errors=(ValueError,), interrupted=(SearchInterrupted,))
