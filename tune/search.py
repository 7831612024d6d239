"""Hyperparameter search on Ray: `python tune/search.py --space glintru --data DIR`.

Prints Tune's progress, a table of the best trials and, on its last line, the experiment directory.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a source checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from glintru.search.objectives import COSTS, DEFAULT_OBJECTIVE  # noqa: E402
from glintru.search.runner import SearchError, SearchInterrupted, SearchSettings, run_search  # noqa: E402
from glintru.search.spaces import SPACES, format_spaces  # noqa: E402


def parse_value(text: str):
    """`--set`/`--grid` values: Python literals (1, 0.5, 1e-3, True, None), else the string."""
    lowered = {"true": True, "false": False, "none": None, "null": None}
    if text.lower() in lowered:
        return lowered[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _pairs(items: list[str], option: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SearchError(f"{option} expects key=value, got {item!r}")
        out.append((key.strip(), value))
    return out


def _seeds(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SearchError(f"--seeds expects integers separated by commas, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tune/search.py",
        description="Search hyperparameters of GLINT-RU or a baseline with Ray Tune + Optuna; a trial "
                    "trains in its Tune trainable, or on Ray Train DDP workers with --workers-per-trial > 1. "
                    "Results land in STORAGE/NAME.")
    p.add_argument("--space", help=f"search space: {', '.join(SPACES)}; `--space list` prints their ranges")
    p.add_argument("--data", help="prepared dataset directory (glintru prepare ...)")
    p.add_argument("--num-samples", type=int, default=20, help="Optuna trials (default 20)")
    p.add_argument("--max-epochs", type=int, default=50, help="epochs per trial at most (default 50)")
    p.add_argument("--scheduler", choices=["asha", "fifo"],
                   help="early stopping of trials: asha (default for a search) or fifo (default for --grid "
                        "and with several objectives; asha then watches the first)")
    p.add_argument("--objective", default=DEFAULT_OBJECTIVE, metavar="M1[:max|min],M2,...",
                   help=f"what the search optimises (default {DEFAULT_OBJECTIVE}): a validation metric, or "
                        f"several for a multi-objective search with a Pareto front, e.g. ndcg@10,infer_ms; "
                        f"costs: {', '.join(COSTS)} (minimised); the first must be a ranking metric")
    p.add_argument("--sampler", choices=["tpe", "random", "gp", "cmaes", "nsga2"],
                   help="Optuna sampler: tpe (default), random, gp or cmaes for one objective; tpe, nsga2 or "
                        "random for several")
    p.add_argument("--grid", nargs="+", metavar="KEY=V1,V2", default=[],
                   help="grid mode (no Optuna): every combination of the listed values")
    p.add_argument("--seeds", type=_seeds, default=[],
                   help="e.g. 0,1,2,3,4: rerun the --top-k best configurations with these seeds "
                        "(with --grid: run every combination with each seed)")
    p.add_argument("--top-k", type=int, default=1, help="configurations rerun by --seeds (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and of the trials (default 0)")
    p.add_argument("--gpus-per-trial", type=float,
                   help="GPUs per trial; fractions share a GPU (0.25: four trials per GPU); default 1 when "
                        "this machine has a GPU and no --address is given, else 0")
    p.add_argument("--workers-per-trial", type=int, default=1, help="Ray Train (DDP) workers per trial")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (split over its workers)")
    p.add_argument("--address", help="join a running Ray cluster: auto or HOST:PORT (default: embedded Ray)")
    p.add_argument("--storage", default="./results",
                   help="results root: a path or s3://... (default ./results); with --address, cloud storage "
                        "or a shared (NFS) path")
    p.add_argument("--shared-storage", action="store_true",
                   help="with --address: accept a local --storage path as reachable from every node (a "
                        "cluster on one machine, or a shared filesystem the check does not recognise)")
    p.add_argument("--name", help="experiment name (default SPACE-DATASET-TIMESTAMP)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted experiment (--name, --storage)")
    p.add_argument("--retry-errored", action="store_true", help="with --resume: run errored trials again")
    p.add_argument("--eval-mode", default="full", help="full, uniN or popN (e.g. pop100); default full")
    p.add_argument("--preset", help="dataset preset of Table 5: ml-1m, beauty, video-games")
    p.add_argument("--set", nargs="+", metavar="KEY=VALUE", default=[], dest="overrides",
                   help="fixed model or training settings for every trial, e.g. max_length=50 patience=5")
    p.add_argument("--grace-period", type=int, default=1, help="ASHA: epochs before a trial can stop")
    p.add_argument("--reduction-factor", type=int, default=3, help="ASHA: keep 1/N at each rung")
    p.add_argument("--max-failures", type=int, default=3, help="retries of a trial after a failure")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as resources fit)")
    p.add_argument("--num-cpus", type=int, help="embedded Ray: logical CPUs (default: all cores)")
    p.add_argument("--num-gpus", type=int, help="embedded Ray: GPUs (default: all visible)")
    p.add_argument("--mlflow", nargs="?", const="", metavar="TRACKING_URI",
                   help="log trials to MLflow (needs `pip install mlflow`)")
    p.add_argument("--optuna-storage", metavar="URL|FILE",
                   help="Optuna study storage: an RDB URL or a journal file (default EXP_DIR/optuna.journal)")
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2, 3], help="Tune's console output")
    return p


def settings_from_args(args: argparse.Namespace) -> SearchSettings:
    if args.space is None and not args.resume:
        raise SearchError("--space is required (see `--space list`)")
    if args.data is None and not args.resume:
        raise SearchError("--data is required: a prepared dataset directory")
    grid = {}
    for key, values in _pairs(args.grid, "--grid"):
        grid[key] = [parse_value(v) for v in values.split(",") if v != ""]
    overrides = {k: parse_value(v) for k, v in _pairs(args.overrides, "--set")}
    return SearchSettings(
        space=args.space or "", data=args.data or "", num_samples=args.num_samples, max_epochs=args.max_epochs,
        scheduler=args.scheduler, grid=grid, seeds=args.seeds, top_k=args.top_k, seed=args.seed,
        gpus_per_trial=args.gpus_per_trial, workers_per_trial=args.workers_per_trial,
        cpus_per_trial=args.cpus_per_trial, address=args.address, storage=args.storage, name=args.name,
        resume=args.resume, retry_errored=args.retry_errored, eval_mode=args.eval_mode, preset=args.preset,
        overrides=overrides, grace_period=args.grace_period, reduction_factor=args.reduction_factor,
        max_failures=args.max_failures, max_concurrent=args.max_concurrent, num_cpus=args.num_cpus,
        num_gpus=args.num_gpus, mlflow=args.mlflow, optuna_storage=args.optuna_storage, verbose=args.verbose,
        objective=args.objective, sampler=args.sampler, shared_storage=args.shared_storage)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.space == "list":
        print(format_spaces())
        return 0
    try:
        exp_dir = run_search(settings_from_args(args))
    except SearchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SearchInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # before Ray started: nothing to resume yet
        print("interrupted before the search started", file=sys.stderr)
        return 130
    print(exp_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
