"""Hyperparameter search on Ray: `python tune/search.py --space glintru --data DIR`.

Prints Tune's progress, a table of the best trials and, on its last line, the experiment directory.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a source checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glintru.search.console import summary  # noqa: E402
from glintru.search.objectives import COSTS, DEFAULT_OBJECTIVE  # noqa: E402
from glintru.search.runner import run_search  # noqa: E402
from glintru.search.settings import DEFAULTS, SearchError, SearchInterrupted, SearchSettings  # noqa: E402
from glintru.search.spaces import SPACES, format_spaces  # noqa: E402
from glintru.settings import parse_settings, parse_value, split_pairs  # noqa: E402

__all__ = ["build_parser", "main", "parse_value", "settings_from_args"]


def _seeds(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects integers separated by commas (0,1,2), got {text!r}") from None


def parse_grid(items: list[str]) -> dict[str, list]:
    """`--grid lr=1e-3,1e-2 ablation=full,no_gru` (one flag or several) -> {key: [values]}; a key
    listed twice is an error, never silently dropped."""
    grid: dict[str, list] = {}
    for key, values in split_pairs(items, "--grid"):
        if key in grid:
            raise ValueError(f"--grid lists {key!r} twice; give all its values once: {key}=V1,V2,...")
        grid[key] = [parse_value(v) for v in values.split(",") if v.strip() != ""]
    return grid


def build_parser() -> argparse.ArgumentParser:
    d = DEFAULTS
    p = argparse.ArgumentParser(
        prog="tune/search.py",
        description="Search hyperparameters of GLINT-RU or a baseline with Ray Tune + Optuna; a trial "
        "trains in its Tune trainable, or on Ray Train DDP workers with --workers-per-trial > 1. "
        "Results land in STORAGE/NAME. Every setting is checked before Ray starts.",
    )
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
        choices=["asha", "fifo"],
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
        choices=["tpe", "random", "gp", "cmaes", "nsga2"],
        help="Optuna sampler: tpe (default), random, gp or cmaes for one objective; tpe, nsga2 or random for several",
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
    return p


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.space == "list":
        print(format_spaces())
        return 0
    # the library logs its progress (the plan, each phase); shown on stderr beside Tune's output, and
    # removed again on return, as tests call main() many times in one process
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("glintru")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if args.verbose >= 1 else logging.WARNING)
    try:
        exp_dir = run_search(settings_from_args(args), typed=typed_settings(argv))
    except SearchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SearchInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # before Ray started: nothing to resume yet
        print("interrupted before the search started", file=sys.stderr)
        return 130
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    print()
    print(summary(exp_dir))
    print(exp_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
