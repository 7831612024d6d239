"""What a search is asked to do (`SearchSettings`) and the one pass that checks it on its own
(`validate_settings`), each check asked of the module that owns its fact: pure functions that read
no file, start no Ray and touch no GPU. plan.py checks it against the machine and the files."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from glintru.models import DATASET_PRESETS, get_model_class
from glintru.search.objectives import DEFAULT_OBJECTIVE, Objective, check_objectives
from glintru.search.spaces import Space, resolve_space
from glintru.settings import check_fields
from glintru.train import TrainConfig, resolve_configs

SCHEDULERS = ("asha", "fifo")
# TrainConfig fields the search sets itself, each from its own option
MANAGED = {
    "epochs": "--max-epochs",
    "eval_mode": "--eval-mode",
    "seed": "--seed/--seeds",
    "device": "--gpus-per-trial",
    "num_threads": "--cpus-per-trial",
    "select_metric": "--objective",
}
# settings a resumed search applies: how it reaches Ray and which experiment it continues. Every
# other setting is in experiment.json, and Tuner.restore takes what it needs from the pickled
# experiment, so a different value given with --resume would be silently ignored: refused instead.
RESUME_FIELDS = ("address", "num_cpus", "num_gpus", "retry_errored", "resume", "storage", "name", "shared_storage")
OPTION_NAMES = {"overrides": "--set", "grid": "--grid", "space": "--space", "data": "--data"}


class SearchError(ValueError):
    """Settings that cannot work; raised before Ray starts."""


class SearchInterrupted(RuntimeError):
    """The search stopped (Ctrl-C, SIGTERM) with trials unfinished; `--resume` finishes it."""


@dataclass
class SearchSettings:
    space: str
    data: str
    num_samples: int = 20
    max_epochs: int = 50
    scheduler: str | None = None  # asha | fifo; default asha for search, fifo for a grid
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    top_k: int = 1
    seed: int = 0
    gpus_per_trial: float | None = None  # default: see plan.default_gpus_per_trial
    workers_per_trial: int = 1
    cpus_per_trial: float = 1.0
    address: str | None = None
    storage: str = "./results"
    name: str | None = None
    resume: bool = False
    retry_errored: bool = False
    eval_mode: str = "full"
    preset: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    grace_period: int = 1
    reduction_factor: int = 3
    max_failures: int = 3
    max_concurrent: int | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    mlflow: str | None = None  # tracking URI; "" uses MLflow's default
    optuna_storage: str | None = None  # RDB URL or journal file; default EXP_DIR/optuna.journal
    verbose: int = 1
    objective: str = DEFAULT_OBJECTIVE  # one or more: ndcg@10,infer_ms (see objectives.py)
    sampler: str | None = None  # tpe (default) | random | gp | cmaes; tpe | nsga2 | random for several
    shared_storage: bool = False  # with --address: a local --storage path that every node reaches

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULTS = SearchSettings(space="", data="")


def _fail(msg: str) -> None:
    raise SearchError(msg)


def option_name(key: str) -> str:
    """The command-line flag of a SearchSettings field."""
    return OPTION_NAMES.get(key, "--" + key.replace("_", "-"))


def merge_resumed(
    given: SearchSettings, stored: Mapping[str, Any], typed: Collection[str] | None = None
) -> SearchSettings:
    """A resumed search's settings: `stored` (experiment.json) plus the RESUME_FIELDS given;
    SearchError naming every other flag given with a value the experiment does not have.

    `typed`: the fields whose flags were typed (a command line knows them), so that a flag typed with
    its default value counts too (`--max-epochs 50` against an experiment of 10); None where only
    the settings are known: then the fields that differ from the defaults count as given."""
    asked, defaults = given.to_dict(), DEFAULTS.to_dict()
    typed = {k for k in defaults if asked[k] != defaults[k]} if typed is None else set(typed) & set(defaults)
    # as experiment.json holds them (tuples as lists), so that an equal value compares equal
    as_stored = json.loads(json.dumps({k: asked[k] for k in typed}, default=str))
    ignored = [
        f"{option_name(key)} (the experiment has {stored.get(key, defaults[key])!r}, given {asked[key]!r})"
        for key in defaults
        if key in typed and key not in RESUME_FIELDS and as_stored[key] != stored.get(key, defaults[key])
    ]
    if ignored:
        _fail(
            "--resume continues the experiment with the settings it was started with; these flags "
            "would be ignored: " + "; ".join(ignored) + ". Drop them (or start a new experiment "
            "under another --name)"
        )
    merged = {**defaults, **{k: v for k, v in stored.items() if k in defaults}}
    merged.update({k: asked[k] for k in RESUME_FIELDS if k in typed})
    merged.update(storage=given.storage, name=given.name, resume=True)
    return SearchSettings(**merged)


def grid_configs(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of a grid's values, keys in sorted order."""
    keys = sorted(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def evaluation_ks(s: SearchSettings) -> tuple[int, ...]:
    """The cut-offs every run evaluates at (TrainConfig.ks unless --set changes them)."""
    ks = s.overrides.get("ks", TrainConfig().ks)
    return tuple(ks) if isinstance(ks, (list, tuple)) else (ks,)


def trial_train_config(s: SearchSettings, objectives: Sequence[Objective]) -> dict[str, Any]:
    """The TrainConfig fields that the search's own options set for every trial (MANAGED, less the
    device and CPU threads, which are each trial's own); `objectives`: `s.objective` parsed."""
    return {
        "epochs": s.max_epochs,
        "eval_mode": s.eval_mode,
        "seed": s.seed,
        # a trial keeps its best epoch by what the search optimises (the first objective ranks)
        "select_metric": objectives[0].name,
    }


# -- the checks -----------------------------------------------------------------------------------


def check_numbers(s: SearchSettings) -> None:
    """Counts and sizes in their ranges."""
    for opt, value, low in (
        ("--num-samples", s.num_samples, 1),
        ("--max-epochs", s.max_epochs, 1),
        ("--top-k", s.top_k, 1),
        ("--workers-per-trial", s.workers_per_trial, 1),
        ("--grace-period", s.grace_period, 1),
        ("--reduction-factor", s.reduction_factor, 2),
        ("--max-failures", s.max_failures, 0),
    ):
        if value < low:
            _fail(f"{opt} must be at least {low}, got {value}")
    if s.max_concurrent is not None and s.max_concurrent < 1:
        _fail(f"--max-concurrent must be at least 1, got {s.max_concurrent}")
    if s.cpus_per_trial <= 0:
        _fail(f"--cpus-per-trial must be positive, got {s.cpus_per_trial}")
    if s.gpus_per_trial is not None and s.gpus_per_trial < 0:
        _fail(f"--gpus-per-trial must be >= 0, got {s.gpus_per_trial}")
    if s.grace_period > s.max_epochs:
        _fail(f"--grace-period {s.grace_period} exceeds --max-epochs {s.max_epochs}")
    if len(set(s.seeds)) != len(s.seeds):
        _fail(f"--seeds has repeated values: {s.seeds}")


def check_options(s: SearchSettings) -> None:
    """Named choices, and options that only apply together with others."""
    from glintru.evaluate import parse_mode

    if s.scheduler is not None and s.scheduler not in SCHEDULERS:
        _fail(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {s.scheduler!r}")
    if s.preset is not None and s.preset not in DATASET_PRESETS:
        _fail(f"unknown --preset {s.preset!r}; choose one of {', '.join(sorted(DATASET_PRESETS))}")
    try:
        parse_mode(s.eval_mode)
    except ValueError as e:
        raise SearchError(f"--eval-mode: {e}") from None
    if s.retry_errored and not s.resume:
        _fail("--retry-errored applies to --resume")
    if s.optuna_storage and s.grid:
        _fail("--optuna-storage applies to an Optuna search; a --grid search has no study")
    if s.optuna_storage and "://" not in s.optuna_storage and not s.optuna_storage.endswith((".journal", ".log")):
        _fail(
            f"--optuna-storage must be an RDB URL (sqlite:///study.db, postgresql://...) or a journal "
            f"file ending in .journal or .log; got {s.optuna_storage!r}"
        )
    if s.grid and s.num_samples != DEFAULTS.num_samples:
        _fail("--num-samples applies to an Optuna search; a --grid runs every combination once per seed")
    if not s.grid and s.seeds and s.top_k > s.num_samples:
        _fail(f"--top-k {s.top_k} exceeds --num-samples {s.num_samples}")
    if s.name is not None and (not s.name or "/" in s.name or s.name.startswith(".")):
        _fail(f"--name {s.name!r} must be a plain directory name")


def _key_list(space: Space) -> str:
    model_keys = get_model_class(space.model).config_class.field_names()
    return (
        f"model keys: {', '.join(sorted(model_keys))}; training keys: "
        f"{', '.join(sorted(TrainConfig.field_names() - set(MANAGED)))}; space labels: "
        f"{', '.join(space.labels) or 'none'}"
    )


def check_value(space: Space, flag: str, key: str, value: Any) -> None:
    """One `--set`/`--grid` value: a space label's value, or a model or training setting of the
    field's type (the message names the flag, key, value and expected type)."""
    if key in MANAGED:
        _fail(f"{flag} {key}=... is managed by the search; use {MANAGED[key]}")
    if key in space.labels:
        try:
            space.to_overrides({key: value})
        except (ValueError, TypeError) as e:
            raise SearchError(f"{flag} {key}={value!r}: {e}") from None
        return
    model_cls = get_model_class(space.model).config_class
    for cls, owner in ((model_cls, space.model), (TrainConfig, "training")):
        if key in cls.field_names():
            try:  # "--set glintru setting kernel_size='abc' (str) is invalid: expected int"
                check_fields(cls, {key: value}, what=f"{flag} {owner}")
            except ValueError as e:
                raise SearchError(str(e)) from None
            return
    _fail(f"{flag} {key}: not a setting of {space.model} ({_key_list(space)})")


def check_model_settings(s: SearchSettings, space: Space, base: TrainConfig) -> None:
    """`--set` and `--grid`: keys the model (or training) has, values of the fields' types, and every
    grid combination, or configurations sampled from the space, valid for the model (`base`: what
    the search sets for every trial, trial_train_config)."""
    for key, value in s.overrides.items():
        check_value(space, "--set", key, value)
    # The fixed training values on their own, so that a bad one is named as the --set value it is
    # (model values are checked with the sampled ones below: a space may sample what they depend on).
    fixed = {k: v for k, v in s.overrides.items() if k in TrainConfig.field_names()}
    try:
        resolve_configs(space.model, s.preset, fixed, base)
    except ValueError as e:
        raise SearchError(f"--set: {e}") from None
    for key, values in s.grid.items():
        if not values:
            _fail(f"--grid {key}= lists no values")
        if key in s.overrides:
            _fail(f"{key} is both fixed by --set and listed by --grid; keep one")
        for value in values:
            check_value(space, "--grid", key, value)
    for config in grid_configs(s.grid) if s.grid else sample_configs(space, s):
        check_config(space, s, config, base)


def sample_configs(space: Space, s: SearchSettings, n: int = 16) -> list[dict[str, Any]]:
    """Configurations drawn from the space (with the fixed settings taken out), to check before the
    search starts; a throwaway in-memory study with a random sampler."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=s.seed))
        out = []
        for _ in range(n):
            trial = study.ask()
            extra = space.sampler(s.overrides)(trial) or {}
            out.append({**trial.params, **extra})
            study.tell(trial, 0.0)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return out


def check_config(space: Space, s: SearchSettings, config: Mapping[str, Any], base: TrainConfig) -> None:
    """One trial's configuration, with the fixed settings, as the model and TrainConfig validate it."""
    try:
        overrides = space.to_overrides({**config, **s.overrides})
        resolve_configs(space.model, s.preset, overrides, base)
    except (ValueError, TypeError) as e:
        raise SearchError(f"configuration {dict(config)} is invalid for {space.model}: {e}") from None


def validate_settings(s: SearchSettings) -> tuple[Space, list[Objective], str]:
    """Every check of the settings themselves, in one pass in the order a user reads the flags: the
    space (spaces.py), the numbers, the options, the objectives (objectives.py, parsed once), the
    model settings (each trial's TrainConfig validates them). Returns the space, the objectives and
    the sampler; SearchError with the fix otherwise. Nothing about this machine or its files."""
    try:
        space = resolve_space(s.space)
    except ValueError as e:
        raise SearchError(str(e)) from None
    check_numbers(s)
    check_options(s)
    try:
        objectives, sampler = check_objectives(
            s.objective, s.sampler, ks=evaluation_ks(s), grid=bool(s.grid), seeds=bool(s.seeds)
        )
    except ValueError as e:
        raise SearchError(str(e)) from None
    check_model_settings(s, space, TrainConfig(**trial_train_config(s, objectives)))
    return space, objectives, sampler
