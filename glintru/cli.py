"""`glintru datasets | download | prepare | synthetic | stats | train | evaluate | search | study |
significance | report | reproduce | compare`: the library's command line."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glintru.command import run_command
from glintru.data.registry import DATASETS  # the dataset registry: choices follow it
from glintru.data.sources import SOURCE_FORMATS  # the format registry: choices follow it
from glintru.data.synthetic import SHAPES  # the --like shapes registry
from glintru.models import DATASET_PRESETS, MODELS  # registries, torch-free: choices follow them
from glintru.settings import parse_settings

if TYPE_CHECKING:
    from glintru.data.dataset import PreparedDataset
    from glintru.train import TrainConfig

PRESETS = tuple(DATASET_PRESETS)
# `glintru synthetic`'s sizes without --like, which its help names
SYNTHETIC_SIZES = {"users": 2000, "items": 800, "avg_length": 30}


def cmd_prepare(args: argparse.Namespace) -> int:
    from glintru.data.prepare import prepare
    from glintru.data.sources import parse_columns

    if args.dataset is None:
        if args.format is None:
            raise ValueError("prepare needs --format FORMAT or --dataset NAME (see `glintru datasets`)")
        out = prepare(
            args.format,
            args.input,
            args.out,
            items_path=args.items,
            min_rating=args.min_rating,
            k_core=args.k_core,
            duplicates=args.duplicates or "first",
            columns=parse_columns(args.columns),
            name=args.name,
            overwrite=args.overwrite,
        )
        return _print_stats(out, as_json=False)

    from glintru.data.dataset import load_dataset
    from glintru.data.registry import compare_counts, get_dataset

    spec = get_dataset(args.dataset)
    if args.format is not None and args.format != spec.format:
        raise ValueError(
            f"dataset {spec.name} is registered as --format {spec.format}, not {args.format}; drop --format"
        )
    # explicit options override the registered recipe; the counts comparison then says so
    recipe: dict[str, Any] = {
        "min_rating": spec.recipe.min_rating,
        "k_core": spec.recipe.k_core,
        "duplicates": spec.recipe.duplicates,
    }
    given = {"min_rating": args.min_rating, "k_core": args.k_core, "duplicates": args.duplicates}
    changed = {k: v for k, v in given.items() if v is not None and v != recipe[k]}
    recipe.update(changed)
    input_file = spec.input_path(args.input)
    items = args.items if args.items is not None else spec.items_path(input_file)
    out = prepare(
        spec.format,
        input_file,
        args.out,
        items_path=items,
        columns=parse_columns(args.columns),
        name=args.name or spec.name,
        overwrite=args.overwrite,
        **recipe,
    )
    _print_stats(out, as_json=False)
    match, message = compare_counts(spec, load_dataset(out).meta["stats"])
    if changed:
        message += " (registered recipe changed: " + ", ".join(f"{k}={v}" for k, v in changed.items()) + ")"
    if match is False:
        print(f"warning: {message}", file=sys.stderr)
    else:
        print(message)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from glintru.data.registry import DATASETS, format_table, get_dataset

    specs = DATASETS if args.name is None else {args.name: get_dataset(args.name)}
    if args.json:
        print(json.dumps([s.to_dict() for s in specs.values()], indent=2))
    else:
        print(format_table(specs))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from glintru.data.download import download
    from glintru.data.registry import get_dataset

    spec = get_dataset(args.name)
    out = Path(args.out)
    results = download(
        spec,
        out,
        base_url=args.base_url,
        items=not args.no_items,
        progress=not args.quiet,
        attempts=args.attempts,
        timeout=args.timeout,
        say=lambda text: print(text, file=sys.stderr),
    )
    for r in results:
        state = "already present" if r.reused else "downloaded"
        check = "sha256 verified" if r.verified else f"sha256 {r.sha256} (no registered checksum to verify)"
        print(f"{r.path}: {state}, {r.bytes:,} bytes, {check}")
    print(f"prepare it: glintru prepare --dataset {spec.name} --input {out / spec.input} --out DIR")
    return 0


def cmd_synthetic(args: argparse.Namespace) -> int:
    from glintru.data.synthetic import generate, generate_like

    sizes = {"--users": args.users, "--items": args.items, "--avg-length": args.avg_length}
    if args.like:
        given = [flag for flag, v in sizes.items() if v is not None]
        if given:  # the shape fixes them; silently ignoring a size would mislead
            raise ValueError(
                f"--like {args.like} sets the sizes itself; drop {', '.join(given)} (use --scale to shrink it)"
            )
        out = generate_like(args.out, args.like, seed=args.seed, scale=args.scale, overwrite=args.overwrite)
    else:
        if args.scale != 1.0:
            raise ValueError("--scale applies to --like shapes only")
        # `is None`, not `or`: --users 0 must reach generate's check, not turn into the default
        out = generate(
            args.out,
            n_users=SYNTHETIC_SIZES["users"] if args.users is None else args.users,
            n_items=SYNTHETIC_SIZES["items"] if args.items is None else args.items,
            avg_length=SYNTHETIC_SIZES["avg_length"] if args.avg_length is None else args.avg_length,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    return _print_stats(out, as_json=False)


def _print_stats(path: str | Path, as_json: bool) -> int:
    from glintru.data.dataset import load_dataset
    from glintru.data.prepare import format_stats

    ds = load_dataset(path)
    if as_json:
        print(json.dumps(ds.stats, sort_keys=True))
    else:
        print(format_stats({**ds.meta, "stats": ds.stats}))
        print(f"dataset: {ds.path}")
        print(f"fingerprint: {ds.fingerprint}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from glintru.data.dataset import load_dataset
    from glintru.data.fingerprint import verify

    verify(load_dataset(args.dir))  # the tables hashed again: a file changed since prepare is an error
    return _print_stats(args.dir, args.json)


def _metrics_table(rows: dict[str, dict[str, float]]) -> str:
    names = sorted({k for m in rows.values() for k in m}, key=lambda n: (n.split("@")[0], int(n.split("@")[1])))
    lines = ["split  " + "  ".join(f"{n:>12}" for n in names)]
    for split, m in rows.items():
        lines.append(f"{split:<6} " + "  ".join(f"{m.get(n, float('nan')):>12.4f}" for n in names))
    return "\n".join(lines)


def _check_run_dir(out: Path, data: str, resume: bool, overwrite: bool) -> Path:
    """What --out holds must fit --resume/--overwrite: a finished run is never silently replaced, an
    interrupted one never silently continued or restarted, and anything but a run (the dataset, a
    folder above it, other files) never written or replaced. Returns --out resolved."""
    from glintru.outputs import RUN, check_output
    from glintru.train import CHECKPOINT_FILE

    real = check_output(out, RUN, inputs={"--data": data}, replace=overwrite)
    if (out / "metrics.json").exists() and not overwrite:
        raise ValueError(f"{out} already holds a finished run; choose another --out or pass --overwrite")
    if (out / "checkpoint").exists() and not (resume or overwrite):
        raise ValueError(f"{out} holds an interrupted run; pass --resume to continue it or --overwrite to start again")
    if resume and not (out / "checkpoint" / CHECKPOINT_FILE).exists():
        raise ValueError(
            f"--resume: {out} holds no interrupted run (no checkpoint/{CHECKPOINT_FILE}); "
            "drop --resume to start a new one"
        )
    return real


# `glintru train` flags of TrainConfig fields (the other fields are --set keys)
TRAIN_FLAGS = {
    "epochs": "--epochs",
    "patience": "--patience",
    "eval_mode": "--eval-mode",
    "seed": "--seed",
    "device": "--device",
    "bf16": "--bf16",
}


def _train_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields whose flags were typed, with their values."""
    return {key: getattr(args, key) for key in TRAIN_FLAGS if getattr(args, key) is not None}


def _resumed_settings(
    args: argparse.Namespace, out: Path, ds: PreparedDataset, flags: dict[str, Any], pairs: dict[str, Any]
) -> tuple[str, str | None, dict[str, Any], TrainConfig]:
    """What `--resume` trains with: the model, preset and settings of the run in `out` (its
    config.json), and of the typed `flags` and --set `pairs` only how long and where to train
    (RESUME_APPLIES). Any other flag or pair with a value the run does not have is refused, naming
    each: the resumed optimizer would keep its own (lr, weight_decay), or config.json would misstate
    the epochs already trained."""
    from glintru.data.fingerprint import short
    from glintru.train import RESUME_APPLIES, TrainConfig, resolve_configs

    cfg_file = out / "config.json"
    try:
        stored = json.loads(cfg_file.read_text())
        model_name, preset, dataset = stored["model"], stored["preset"], stored["dataset"]
        settings = {**stored["model_config"], **stored["train_config"]}
        trained_model, trained_train = resolve_configs(model_name, preset, settings)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"{cfg_file}: not readable as the run's settings ({type(e).__name__}: {e}); the run cannot be "
            "resumed: start it again with --overwrite"
        ) from None
    changed = []
    if args.model != model_name:
        changed.append(f"--model (the run has {model_name!r}, given {args.model!r})")
    if args.preset is not None and args.preset != preset:
        changed.append(f"--preset (the run has {preset!r}, given {args.preset!r})")
    trained_on = dataset.get("fingerprint")
    if trained_on is not None:
        other_data, known_as = trained_on != ds.fingerprint, f"fingerprint {short(trained_on)}"
    else:  # a run from before fingerprints: known by its name and counts
        other_data, known_as = dataset.get("stats") != ds.meta.get("stats", {}), f"{dataset.get('name')!r}"
    if other_data:
        changed.append(f"--data (the run was trained on {dataset.get('path')}, {known_as}; given {ds.path})")
    given = {**flags, **pairs}  # as cmd_train combines them: a --set pair wins over a flag
    if not changed:
        asked_model, asked_train = resolve_configs(model_name, preset, {**settings, **given})
        for key, value in given.items():
            was, now = (
                (trained_model, asked_model) if key in asked_model.field_names() else (trained_train, asked_train)
            )
            if key not in RESUME_APPLIES and getattr(now, key) != getattr(was, key):
                flag = f"--set {key}" if key in pairs else TRAIN_FLAGS[key]
                changed.append(f"{flag} (the run has {getattr(was, key)!r}, given {value!r})")
    if changed:
        raise ValueError(
            f"--resume continues the run in {out} with the settings it was trained with; these would change "
            f"them: {'; '.join(changed)}. Drop them, or start a new run (another --out, or --overwrite); a "
            f"resume may change only {', '.join(RESUME_APPLIES)}"
        )
    applied = {k: v for k, v in given.items() if k in RESUME_APPLIES}
    return model_name, preset, {**settings, **applied}, TrainConfig()


def _stopped(out: Path, error: FloatingPointError) -> str:
    """The one error line of a run that stopped on a non-finite loss or weights: what is left of it."""
    from glintru.train import CHECKPOINT_FILE, FAILED_FILE

    if (out / "checkpoint" / CHECKPOINT_FILE).exists():
        left = (
            "its checkpoint keeps the last finished epoch: --resume continues from there once the cause is "
            "fixed, --overwrite starts again"
        )
    else:
        left = "no epoch finished, so there is nothing to resume"
    return f"{error}; the run stopped, marked in {out / FAILED_FILE}; {left}"


def cmd_train(args: argparse.Namespace) -> int:
    from glintru.data.dataset import load_dataset
    from glintru.evaluate import check_mode_fits
    from glintru.outputs import locked, remove_output
    from glintru.train import TrainConfig, resolve_configs, resolve_device, train

    # Every setting, the run directory and the dataset are checked before anything is replaced or
    # trained: a typo must not cost an epoch or an earlier run.
    overrides = parse_settings(args.set)
    flags = _train_flags(args)
    cfg = TrainConfig(**flags)
    resolve_device(resolve_configs(args.model, args.preset, overrides, cfg)[1].device)
    out = Path(args.out)
    _check_run_dir(out, args.data, args.resume, args.overwrite)
    ds = load_dataset(args.data)
    model_name, preset = args.model, args.preset
    if args.resume:
        model_name, preset, overrides, cfg = _resumed_settings(args, out, ds, flags, overrides)
    check_mode_fits(resolve_configs(model_name, preset, overrides, cfg)[1].eval_mode, ds.n_items)
    with locked(out):  # the whole run: a second command on the same --out is refused, not interleaved
        real = _check_run_dir(out, args.data, args.resume, args.overwrite)  # again, now that it is ours
        if args.overwrite and real.exists():
            remove_output(real)
        try:
            result = train(
                ds, model_name, real, preset=preset, overrides=overrides, config=cfg, progress=not args.quiet
            )
        except FloatingPointError as e:
            raise ValueError(_stopped(real, e)) from None
    m = result.metrics
    print(_metrics_table({"valid": m["valid"], "test": m["test"]}))
    print(
        f"best epoch {m['best_epoch']} of {m['epochs']}; {m['seconds_per_epoch']:.2f} s/epoch; "
        f"inference {m['infer_ms_per_batch']:.1f} ms per 2048-user batch; "
        f"peak memory {m['peak_memory_mb']:.0f} MB"
    )
    print(f"run: {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import pickle

    import torch

    from glintru.data.dataset import load_dataset
    from glintru.data.fingerprint import short
    from glintru.evaluate import check_mode_fits, evaluate, parse_mode, protocol, write_per_user
    from glintru.models import build_model, get_model_class
    from glintru.outputs import locked
    from glintru.train import resolve_device

    # The flags first: a typo should not cost loading a dataset and a model.
    if args.eval_mode is not None:
        parse_mode(args.eval_mode)
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed {args.seed}: the negative-sampling seed must be a non-negative integer")
    try:
        device = resolve_device(args.device)
    except RuntimeError as e:
        raise ValueError(f"--device {args.device}: {str(e).splitlines()[0]}") from None
    run = Path(args.run)
    config, cfg_file, weights = _read_run(run)
    data = args.data or config["dataset"].get("path")
    if data is None:
        raise ValueError("the run does not record its dataset path; pass --data DIR")
    ds = load_dataset(data)
    trained_on = config["dataset"].get("fingerprint")  # None: a run from before fingerprints
    if trained_on is not None and trained_on != ds.fingerprint:
        raise ValueError(
            f"{ds.path} holds other data than {run} was trained on (fingerprint {short(ds.fingerprint)}, "
            f"the run's {short(trained_on)}); pass the run's own dataset with --data"
        )
    try:
        model_class = get_model_class(config["model"])
    except (KeyError, ValueError) as e:
        raise ValueError(f"{cfg_file}: {e.args[0] if e.args else e}") from None
    try:
        model_cfg = model_class.config_class(**_tupled(config["model_config"]))
    except TypeError as e:
        raise ValueError(f"{cfg_file}: model_config does not fit model {config['model']!r} ({e})") from None
    features = ds.item_features() if ds.feature_names else None
    model = build_model(config["model"], ds.n_items, model_cfg, item_features=features).to(device)
    try:
        state = torch.load(weights, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:  # damaged, truncated or not a state dict
        raise ValueError(
            f"{weights}: not readable as model weights ({type(e).__name__}); "
            "the run directory is damaged, train it again"
        ) from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(line.strip() for line in str(e).splitlines()[1:2])
        raise ValueError(
            f"{weights}: the weights do not fit {config['model']} on {ds.path} as {cfg_file.name} "
            f"describes it ({detail}); pass the run's own dataset with --data"
        ) from None
    mode = args.eval_mode or config["train_config"]["eval_mode"]
    check_mode_fits(mode, ds.n_items)
    seed = config["train_config"]["seed"] if args.seed is None else args.seed
    with locked(run, flag="--run"):  # a train --overwrite of this run must not delete it meanwhile
        results = {
            split: evaluate(
                model, ds, split, mode=mode, ks=tuple(config["train_config"]["ks"]), device=device, seed=seed
            )
            for split in args.splits
        }
        # Written only once every split is evaluated, each file atomically: a failure leaves none behind.
        for split, res in results.items():
            write_per_user(res.per_user, run / f"eval-{mode}-{split}_users.parquet")
        rows = {split: res.metrics for split, res in results.items()}
        summary = run / f"eval-{mode}.json"
        tmp = summary.with_name(f".{summary.name}.tmp")
        record = {"seed": seed, "dataset_fingerprint": ds.fingerprint, **protocol(mode, seed)}
        tmp.write_text(json.dumps({**record, **rows}, indent=2) + "\n")
        tmp.replace(summary)
    print(_metrics_table(rows))
    print(f"written: {summary}")
    return 0


# What `glintru evaluate` reads from a run's config.json.
RUN_CONFIG_KEYS = {"model": None, "model_config": None, "dataset": None, "train_config": ("eval_mode", "seed", "ks")}


def _read_run(run: Path) -> tuple[dict[str, Any], Path, Path]:
    """A finished run's config (checked for what evaluate needs), its path and its weights' path."""
    cfg_file, weights = run / "config.json", run / "model.pt"
    for f in (cfg_file, weights):
        if not f.exists():
            raise ValueError(f"{run} is not a finished run directory (missing {f.name})")
    try:
        config = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{cfg_file} line {e.lineno}: invalid JSON ({e.msg}); the run directory is damaged, train it again"
        ) from None
    for key, inner in RUN_CONFIG_KEYS.items():
        if not isinstance(config, dict) or key not in config:
            raise ValueError(
                f"{cfg_file}: no key {key!r}; a run's config.json holds "
                f"{', '.join(RUN_CONFIG_KEYS)} (written by glintru train)"
            )
        missing = [k for k in inner or () if k not in config[key]]
        if missing:
            raise ValueError(f"{cfg_file}: no key {key}.{missing[0]}; written by an older glintru? train it again")
    return config, cfg_file, weights


def _tupled(d: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def build_parser() -> argparse.ArgumentParser:
    from glintru.analysis import cli as analysis_cli
    from glintru.analysis import reproduction, rerun
    from glintru.data.download import fetch
    from glintru.search import cli as search_cli
    from glintru.train import TrainConfig

    p = argparse.ArgumentParser(prog="glintru", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    pp = sub.add_parser("prepare", help="read a raw interaction log and write a prepared dataset")
    pp.add_argument("--format", choices=list(SOURCE_FORMATS), help="the input's format (not needed with --dataset)")
    pp.add_argument(
        "--dataset",
        choices=list(DATASETS),
        metavar="NAME",
        help="a registered dataset (`glintru datasets`): its format and the paper's recipe, "
        "and a check of the result against its published counts",
    )
    pp.add_argument(
        "--input",
        required=True,
        help="ratings/reviews/.inter/sequence file (with --dataset also the download directory)",
    )
    pp.add_argument("--items", help="item metadata (ML-1M movies.dat, Amazon meta JSON) for side features")
    pp.add_argument("--min-rating", type=float, help="keep interactions with rating >= R")
    pp.add_argument("--k-core", type=int, help="iteratively keep users and items with >= K interactions")
    pp.add_argument(
        "--duplicates",
        choices=("first", "last", "keep"),
        help="repeated (user, item) pairs: keep the first, the last, or all (default first)",
    )
    pp.add_argument("--columns", help="for --format csv: role=column pairs, e.g. user=uid,item=iid,time=ts")
    pp.add_argument("--name", help="dataset name recorded in meta.json (default: from the input path, e.g. ml-1m)")
    pp.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    pp.add_argument("--out", required=True)
    pp.set_defaults(func=cmd_prepare)

    pl = sub.add_parser("datasets", help="list the registered public datasets (addresses, recipes, counts)")
    pl.add_argument("name", nargs="?", choices=list(DATASETS), metavar="NAME", help="show one dataset only")
    pl.add_argument("--json", action="store_true", help="the registry entries as JSON")
    pl.set_defaults(func=cmd_datasets)

    pd_ = sub.add_parser("download", help="download a registered dataset's files (resumable, verified)")
    pd_.add_argument("name", choices=list(DATASETS), metavar="NAME", help="a name from `glintru datasets`")
    pd_.add_argument("--out", required=True, help="directory for the downloaded (and unzipped) files")
    pd_.add_argument("--base-url", help="fetch the same file names from this address instead (a mirror)")
    pd_.add_argument("--no-items", action="store_true", help="skip the item metadata files")
    fetch_defaults = inspect.signature(fetch).parameters  # the defaults of a download are fetch's
    pd_.add_argument(
        "--attempts",
        type=int,
        default=fetch_defaults["attempts"].default,
        help="tries per file when the connection breaks",
    )
    pd_.add_argument(
        "--timeout",
        type=float,
        default=fetch_defaults["timeout"].default,
        help="seconds without data before a try fails",
    )
    pd_.add_argument("--quiet", action="store_true", help="no progress bar")
    pd_.set_defaults(func=cmd_download)

    ps = sub.add_parser("synthetic", help="generate a synthetic dataset with sequential structure")
    ps.add_argument(
        "--like",
        choices=list(SHAPES),
        help="a real dataset's shape: its Table 1 counts and heavy-tailed sequence lengths",
    )
    ps.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="with --like: shrink users, items and interactions by this factor (0 < S <= 1)",
    )
    # None by default, so that --like can tell a size typed from one left out
    ps.add_argument("--users", type=int, help=f"number of users (default {SYNTHETIC_SIZES['users']})")
    ps.add_argument("--items", type=int, help=f"number of items (default {SYNTHETIC_SIZES['items']})")
    ps.add_argument("--avg-length", type=float, help=f"mean sequence length (default {SYNTHETIC_SIZES['avg_length']})")
    ps.add_argument("--seed", type=int, default=0)
    ps.add_argument("--overwrite", action="store_true")
    ps.add_argument("--out", required=True)
    ps.set_defaults(func=cmd_synthetic)

    st = sub.add_parser(
        "stats", help="print a prepared dataset's statistics and its fingerprint, checked against its tables"
    )
    st.add_argument("dir")
    st.add_argument("--json", action="store_true", help="one JSON object (users, items, interactions, ...)")
    st.set_defaults(func=cmd_stats)

    pt = sub.add_parser("train", help="train one model and write a run directory")
    pt.add_argument("--data", required=True, help="prepared dataset directory")
    pt.add_argument("--model", required=True, choices=list(MODELS), metavar="MODEL", help=f"one of {', '.join(MODELS)}")
    pt.add_argument("--preset", choices=PRESETS, help="the paper's Table 5 settings for that dataset (default: none)")
    pt.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override a model or training setting, e.g. --set hidden_size=64 lr=0.01 "
        "(repeatable; a flag may take several pairs; a key given twice is an error)",
    )
    # These flags default to None, so that a resume tells a flag typed from one left out (which
    # keeps the run's value); TrainConfig holds the defaults the help names.
    t = TrainConfig()
    pt.add_argument("--epochs", type=int, help=f"most epochs to train (default {t.epochs})")
    pt.add_argument(
        "--patience",
        type=int,
        help=f"stop after this many epochs without a better validation select_metric (default {t.patience}; "
        f"select_metric is {t.select_metric} unless --set select_metric=recall@20 or another metric)",
    )
    pt.add_argument(
        "--eval-mode", help=f"full, uniN, popN or popN-recbole (e.g. pop100, the paper's; default {t.eval_mode})"
    )
    pt.add_argument("--seed", type=int, help=f"seed for weights, batches and negatives (default {t.seed})")
    pt.add_argument("--device", help=f"auto, cpu, cuda or cuda:N (default {t.device}: cuda if available)")
    pt.add_argument("--bf16", action="store_true", default=None, help="bfloat16 autocast on CUDA")
    again = pt.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    again.add_argument("--overwrite", action="store_true", help="discard what --out holds and start again")
    pt.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    pt.add_argument("--out", required=True, help="run directory to write")
    pt.set_defaults(func=cmd_train)

    pe = sub.add_parser("evaluate", help="re-evaluate a finished run (e.g. under another protocol)")
    pe.add_argument("--run", required=True, help="a finished run directory (glintru train --out)")
    pe.add_argument("--eval-mode", help="full, uniN, popN or popN-recbole (default: the run's own)")
    pe.add_argument(
        "--splits", nargs="+", choices=("valid", "test"), default=["test"], help="splits to evaluate (default test)"
    )
    pe.add_argument("--seed", type=int, help="negative-sampling seed, >= 0 (default: the run's)")
    pe.add_argument("--data", help="dataset directory, if it moved since training")
    pe.add_argument("--device", default=t.device, help="auto, cpu, cuda or cuda:N")
    pe.set_defaults(func=cmd_evaluate)

    # Commands with a command line of their own (also run as the scripts tune/search.py, tune/study.py
    # and analysis/*.py): their flags are added here for --help and the checks of argparse, and main()
    # hands them the rest of the command line.
    pr = sub.add_parser(
        "search", help="search hyperparameters on Ray Tune + Optuna", description=search_cli.DESCRIPTION
    )
    search_cli.add_arguments(pr)
    pr.set_defaults(command_main=search_cli.main)
    py = sub.add_parser(
        "study", help="run one of the paper's GLINT-RU studies", description=search_cli.STUDY_DESCRIPTION
    )
    search_cli.add_study_arguments(py)
    py.set_defaults(command_main=search_cli.study_main)
    pg = sub.add_parser(
        "significance",
        help="the Table 2-style significance table of experiments",
        description=analysis_cli.SIGNIFICANCE_DESCRIPTION,
    )
    analysis_cli.add_significance_arguments(pg)
    pg.set_defaults(command_main=analysis_cli.significance_main)
    pw = sub.add_parser(
        "report", help="a report of every table and figure of experiments", description=analysis_cli.REPORT_DESCRIPTION
    )
    analysis_cli.add_report_arguments(pw)
    pw.set_defaults(command_main=analysis_cli.report_main)
    pc = sub.add_parser(
        "reproduce", help="Table 2 beside the paper from glintru train runs", description=reproduction.DESCRIPTION
    )
    reproduction.add_arguments(pc)
    pc.set_defaults(command_main=reproduction.main)
    pv = sub.add_parser(
        "compare", help="a search's seed reruns beside a preset at the same seeds", description=rerun.DESCRIPTION
    )
    rerun.add_arguments(pv)
    pv.set_defaults(command_main=rerun.main)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if hasattr(args, "command_main"):  # its own command line: the words after the command's name
        return args.command_main(argv[1:], command=f"glintru {args.command}")
    # the library logs (e.g. train's per-epoch line); the command line shows it on stderr
    return run_command(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
