"""Runs a search on Ray: checks the settings before Ray starts, starts an embedded Ray or joins a
cluster, shares the dataset, runs the phases with Tune and writes the experiment directory.

Phases: "search" (Optuna over a space, one objective or several, ASHA or FIFO), then "seeds" (the
best finished configurations by validation rerun with several seeds) when seeds are given; or "grid" alone (every combination of
the listed values, times the seeds) when a grid is given. Each phase is one Tune experiment under
EXP_DIR/tune/<phase>, so an interrupted search resumes phase by phase with Tuner.restore.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import glintru
from glintru.data.dataset import DatasetError, PreparedDataset, load_dataset
from glintru.models import DATASET_PRESETS, get_model_class, resolve_config
from glintru.search import results, study
from glintru.search.objectives import DEFAULT_OBJECTIVE, Objective, check_sampler, parse_objectives
from glintru.search.results import SELECTION_METRIC, VARIANT_KEY, TrialRecord, join
from glintru.search.spaces import Space, get_space
from glintru.train import TrainConfig, split_overrides

MODE = "max"
SCHEDULERS = ("asha", "fifo")
# TrainConfig fields the search sets itself, each from its own option
MANAGED = {"epochs": "--max-epochs", "eval_mode": "--eval-mode", "seed": "--seed/--seeds",
           "device": "--gpus-per-trial", "num_threads": "--cpus-per-trial"}
# settings a resumed search applies: how it reaches Ray and which experiment it continues. Every
# other setting is in experiment.json, and Tuner.restore takes what it needs from the pickled
# experiment, so a different value given with --resume would be silently ignored: refused instead.
RESUME_FIELDS = ("address", "num_cpus", "num_gpus", "retry_errored", "resume", "storage", "name",
                 "shared_storage")
OPTION_NAMES = {"overrides": "--set", "grid": "--grid", "space": "--space", "data": "--data"}


class SearchError(ValueError):
    """Settings that cannot work; raised before Ray starts."""


class SearchInterrupted(RuntimeError):
    """The search stopped (Ctrl-C) with trials unfinished; `--resume` finishes it."""


@dataclass
class SearchSettings:
    space: str
    data: str
    num_samples: int = 20
    max_epochs: int = 50
    scheduler: str | None = None          # asha | fifo; default asha for search, fifo for a grid
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    top_k: int = 1
    seed: int = 0
    gpus_per_trial: float | None = None  # default: 1 on a machine with a GPU (local mode), else 0
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
    mlflow: str | None = None             # tracking URI; "" uses MLflow's default
    optuna_storage: str | None = None     # RDB URL or journal file; default EXP_DIR/optuna.journal
    verbose: int = 1
    objective: str = DEFAULT_OBJECTIVE    # one or more: ndcg@10,infer_ms (see objectives.py)
    sampler: str | None = None            # tpe (default) | random | gp | cmaes; tpe | nsga2 | random for several
    shared_storage: bool = False          # with --address: a local --storage path that every node reaches

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Plan:
    """Validated settings and what follows from them."""

    settings: SearchSettings
    space: Space
    dataset: PreparedDataset
    exp_dir: str
    phases: list[str]
    scheduler: str
    objectives: list[Objective] = field(default_factory=list)
    sampler: str = "tpe"

    @property
    def metric(self) -> str:
        """The metric that selects configurations (seed reruns) and that ASHA watches."""
        return self.objectives[0].metric if self.objectives else SELECTION_METRIC

    @property
    def mode(self) -> str:
        return self.objectives[0].mode if self.objectives else MODE

    @property
    def name(self) -> str:
        return self.settings.name or ""

    @property
    def train_storage(self) -> str:
        return join(self.exp_dir, "train")

    @property
    def tune_storage(self) -> str:
        return join(self.exp_dir, "tune")

    @property
    def local(self) -> bool:
        return self.settings.address is None


# -- validation (no Ray) --------------------------------------------------------------------------

def _fail(msg: str) -> None:
    raise SearchError(msg)


def option_name(key: str) -> str:
    return OPTION_NAMES.get(key, "--" + key.replace("_", "-"))


def load_settings_for_resume(settings: SearchSettings) -> SearchSettings:
    """A resumed search's settings: those stored in experiment.json plus the RESUME_FIELDS given;
    SearchError naming every other flag given with a value the experiment does not have."""
    if not settings.name:
        _fail("--resume needs --name (the experiment to resume) and the same --storage")
    exp_dir = join(results.normalize_location(settings.storage), settings.name)
    if not results.exists(join(exp_dir, results.EXPERIMENT_FILE)):
        _fail(f"nothing to resume: {exp_dir} holds no {results.EXPERIMENT_FILE} "
              f"(check --name and --storage)")
    stored = results.read_experiment(exp_dir)["settings"]
    given = settings.to_dict()
    defaults = SearchSettings(space="", data="").to_dict()
    ignored = [f"{option_name(key)} (the experiment has {stored.get(key, defaults[key])!r}, given {given[key]!r})"
               for key in defaults
               if key not in RESUME_FIELDS and given[key] != defaults[key] and given[key] != stored.get(key)]
    if ignored:
        _fail("--resume continues the experiment with the settings it was started with; these flags "
              "would be ignored: " + "; ".join(ignored) + ". Drop them (or start a new experiment "
              "under another --name)")
    merged = {**defaults, **{k: v for k, v in stored.items() if k in defaults}}
    merged.update({k: given[k] for k in RESUME_FIELDS if given[k] != defaults[k]})
    merged.update(storage=settings.storage, name=settings.name, resume=True)
    return SearchSettings(**merged)


def check_settings(settings: SearchSettings) -> Plan:
    """Every check that can run before Ray starts; raises SearchError with the fix."""
    s = settings
    try:
        space = get_space(s.space)
    except ValueError as e:
        raise SearchError(str(e)) from None
    try:
        model_cls = get_model_class(space.model)
    except ImportError as e:
        raise SearchError(f"model {space.model!r} of space {space.name!r} cannot be imported: {e}") from None

    try:
        dataset = load_dataset(s.data)
    except DatasetError as e:
        raise SearchError(f"--data: {e}") from None

    for opt, value, low in (("--num-samples", s.num_samples, 1), ("--max-epochs", s.max_epochs, 1),
                            ("--top-k", s.top_k, 1), ("--workers-per-trial", s.workers_per_trial, 1),
                            ("--grace-period", s.grace_period, 1), ("--reduction-factor", s.reduction_factor, 2),
                            ("--max-failures", s.max_failures, 0)):
        if value < low:
            _fail(f"{opt} must be at least {low}, got {value}")
    if s.cpus_per_trial <= 0:
        _fail(f"--cpus-per-trial must be positive, got {s.cpus_per_trial}")
    if s.gpus_per_trial is None:  # local mode on a GPU machine: a GPU per worker when there are enough
        local_gpus = _local_gpus(s) if s.address is None else 0
        s.gpus_per_trial = float(s.workers_per_trial) if local_gpus >= s.workers_per_trial else 0.0
    if s.gpus_per_trial < 0:
        _fail(f"--gpus-per-trial must be >= 0, got {s.gpus_per_trial}")
    if s.scheduler is not None and s.scheduler not in SCHEDULERS:
        _fail(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {s.scheduler!r}")
    if s.grace_period > s.max_epochs:
        _fail(f"--grace-period {s.grace_period} exceeds --max-epochs {s.max_epochs}")
    if s.preset is not None and s.preset not in DATASET_PRESETS:
        _fail(f"unknown --preset {s.preset!r}; choose one of {', '.join(sorted(DATASET_PRESETS))}")
    from glintru.evaluate import parse_mode

    try:
        parse_mode(s.eval_mode)
    except ValueError as e:
        raise SearchError(f"--eval-mode: {e}") from None
    if len(set(s.seeds)) != len(s.seeds):
        _fail(f"--seeds has repeated values: {s.seeds}")

    # fixed overrides and grid keys must be settings this model (or training) has
    for key in s.overrides:
        if key in MANAGED:
            _fail(f"--set {key}=... is managed by the search; use {MANAGED[key]}")
    try:
        # a space label (e.g. ablation=full) stands for the settings it expands to
        split_overrides(space.model, space.to_overrides(s.overrides))
    except ValueError as e:
        raise SearchError(f"--set: {e}") from None
    for key, values in s.grid.items():
        if key in MANAGED:
            _fail(f"--grid {key}=... is managed by the search; use {MANAGED[key]}")
        if not values:
            _fail(f"--grid {key}= lists no values")
        if key in s.overrides:
            _fail(f"{key} is both fixed by --set and listed by --grid; keep one")
        if key not in space.labels and key not in model_cls.config_class.field_names() | TrainConfig.field_names():
            _fail(f"--grid {key}: not a setting of {space.model} (model keys: "
                  f"{', '.join(sorted(model_cls.config_class.field_names()))}; training keys: "
                  f"{', '.join(sorted(TrainConfig.field_names() - set(MANAGED)))}; space labels: "
                  f"{', '.join(space.labels) or 'none'})")
    for config in _sample_configs(space, s):
        _check_config(space, s, config)

    _check_resources(s)
    objectives, sampler = _check_objectives(s)
    _check_storage(s)
    if s.mlflow is not None:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            _fail("--mlflow needs the mlflow package: pip install mlflow (or drop --mlflow)")
    if s.retry_errored and not s.resume:
        _fail("--retry-errored applies to --resume")
    if s.optuna_storage and s.grid:
        _fail("--optuna-storage applies to an Optuna search; a --grid search has no study")
    if s.optuna_storage and "://" not in s.optuna_storage and not s.optuna_storage.endswith((".journal", ".log")):
        _fail(f"--optuna-storage must be an RDB URL (sqlite:///study.db, postgresql://...) or a journal "
              f"file ending in .journal; got {s.optuna_storage!r}")
    if s.grid and s.num_samples != SearchSettings.num_samples:
        _fail("--num-samples applies to an Optuna search; a --grid runs every combination once per seed")
    if not s.grid and s.seeds and s.top_k > s.num_samples:
        _fail(f"--top-k {s.top_k} exceeds --num-samples {s.num_samples}")

    if not s.name:
        s.name = f"{space.name}-{dataset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if "/" in s.name or s.name.startswith("."):
        _fail(f"--name {s.name!r} must be a plain directory name")
    exp_dir = join(results.normalize_location(s.storage), s.name)
    if not s.resume and results.exists(exp_dir):
        _fail(f"experiment {exp_dir} already exists; resume it with --resume --name {s.name} "
              f"or choose another --name")
    phases = ["grid"] if s.grid else (["search", "seeds"] if s.seeds else ["search"])
    # ASHA watches one metric: with several objectives it runs only when asked, on the first
    scheduler = s.scheduler or ("fifo" if s.grid or len(objectives) > 1 else "asha")
    return Plan(settings=s, space=space, dataset=dataset, exp_dir=exp_dir, phases=phases, scheduler=scheduler,
                objectives=objectives, sampler=sampler)


def grid_configs(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = sorted(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _sample_configs(space: Space, s: SearchSettings, n: int = 16) -> list[dict[str, Any]]:
    """Configs to check before the search starts: the whole grid, or samples of the space."""
    if s.grid:
        return grid_configs(s.grid)
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a throwaway study: no "study created" line
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


def _check_config(space: Space, s: SearchSettings, config: dict[str, Any]) -> None:
    try:
        overrides = space.to_overrides({**config, **s.overrides})
        model_over, train_over = split_overrides(space.model, overrides)
        resolve_config(space.model, s.preset, model_over)
        dataclasses.replace(TrainConfig(), **train_over).validate()
    except (ValueError, TypeError) as e:
        raise SearchError(f"configuration {config} is invalid for {space.model}: {e}") from None


def _check_objectives(s: SearchSettings) -> tuple[list[Objective], str]:
    try:
        objectives = parse_objectives(s.objective)
    except ValueError as e:
        raise SearchError(f"--objective: {e}") from None
    ks = split_overrides_ks(s)
    for obj in objectives:
        if obj.k is not None and obj.k not in ks:
            _fail(f"--objective {obj.name}: runs evaluate at k in {ks}; add k with --set ks=... or choose one of them")
    if s.grid and s.sampler:
        _fail("--sampler applies to an Optuna search; a --grid search samples nothing")
    if len(objectives) > 1 and s.seeds and not s.grid:
        _fail("--seeds reruns the best configuration, but several objectives have a front of them: pick "
              "configurations from the Pareto front and rerun them with --grid KEY=V ... --seeds")
    try:
        sampler = check_sampler(s.sampler, len(objectives))
    except ValueError as e:
        raise SearchError(str(e)) from None
    return objectives, sampler


def split_overrides_ks(s: SearchSettings) -> tuple[int, ...]:
    """The cut-offs every run evaluates at (TrainConfig.ks unless --set changes them)."""
    ks = s.overrides.get("ks", TrainConfig().ks)
    return tuple(ks) if isinstance(ks, (list, tuple)) else (ks,)


# filesystems that other machines reach too (/proc/mounts types); fuse.* covers gcsfuse, s3fs,
# mountpoint-s3, juicefs and sshfs
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph",
                       "glusterfs", "wekafs")


def filesystem_type(path: str, mounts: str | None = None) -> str | None:
    """The type of the filesystem holding `path` (the longest mount point above it) by the mount
    table (default /proc/mounts), or None where there is none (not Linux)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    best, fstype = "", None
    target = os.path.realpath(path)
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best, fstype = point, parts[2]
    return fstype


def _check_storage(s: SearchSettings) -> None:
    """On a cluster, trials on every node write checkpoints and results under --storage: a path
    only this machine has would scatter them over the workers' disks."""
    if s.address is None or s.shared_storage:
        return
    location = str(s.storage)
    if results.is_uri(location) and not location.startswith("file://"):
        return
    path = location.removeprefix("file://")
    fstype = filesystem_type(path)
    if fstype and (fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse.")):
        return
    _fail(f"--storage {location} is a local path ({fstype or 'unknown'} filesystem), but with --address the "
          f"trials run on other nodes, which cannot reach it: use cloud storage (--storage s3://BUCKET/PATH or "
          f"gs://BUCKET/PATH) or a path on an NFS mount that every node shares (add --shared-storage when "
          f"it is shared in a way this check does not recognise, e.g. a cluster on one machine)")


def _local_gpus(s: SearchSettings) -> int:
    if s.num_gpus is not None:
        return s.num_gpus
    import torch

    return torch.cuda.device_count()


def _check_resources(s: SearchSettings) -> None:
    per_worker_gpu = s.gpus_per_trial / s.workers_per_trial
    if s.workers_per_trial > 1 and 0 < per_worker_gpu < 1:
        _fail(f"--gpus-per-trial {s.gpus_per_trial:g} over {s.workers_per_trial} DDP workers gives each "
              f"worker a fraction of a GPU; DDP needs one whole GPU per worker "
              f"(use --gpus-per-trial {s.workers_per_trial})")
    if per_worker_gpu > 1:
        _fail(f"--gpus-per-trial {s.gpus_per_trial:g} with {s.workers_per_trial} worker(s) gives a worker "
              f"{per_worker_gpu:g} GPUs, but a worker trains on one; raise --workers-per-trial to "
              f"{math.ceil(s.gpus_per_trial)}")
    if s.address is not None:
        return  # a cluster's resources are known (and may grow) only once joined
    cpus = s.num_cpus or os.cpu_count() or 1
    if s.cpus_per_trial > cpus:
        _fail(f"--cpus-per-trial {s.cpus_per_trial:g} exceeds the {cpus} CPUs of this machine "
              f"(lower it, or raise --num-cpus)")
    if s.gpus_per_trial > 0:
        gpus = _local_gpus(s)
        if gpus == 0:
            _fail(f"--gpus-per-trial {s.gpus_per_trial:g} needs a GPU, but this machine has none visible "
                  f"to torch; use --gpus-per-trial 0, or --address to join a GPU cluster")
        if s.gpus_per_trial > gpus:
            _fail(f"--gpus-per-trial {s.gpus_per_trial:g} exceeds the {gpus} GPU(s) of this machine")


# -- Ray ------------------------------------------------------------------------------------------

# Ray Train gives a worker group 60 s to start by default: too little on a loaded CPU box, or
# while the autoscaler brings up a GPU node. The user's own setting wins.
WORKER_START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
WORKER_START_TIMEOUT_S = "600"


def _runtime_env() -> dict[str, Any]:
    """Environment of every Ray process of the search: a source checkout importable by the
    workers (an installed package needs nothing) and a patient worker start."""
    env = {WORKER_START_TIMEOUT_ENV: os.environ.get(WORKER_START_TIMEOUT_ENV, WORKER_START_TIMEOUT_S)}
    root = Path(glintru.__file__).resolve().parent.parent
    if not ("site-packages" in root.parts or "dist-packages" in root.parts):
        paths = [str(root)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return {"env_vars": env}


def start_ray(s: SearchSettings) -> bool:
    """Start an embedded Ray (local mode) or join a cluster; False when Ray was already running."""
    import ray

    if ray.is_initialized():
        return False
    env = _runtime_env()
    if s.address is not None:
        ray.init(address=s.address, runtime_env=env or None)
    else:
        # the dashboard shows the trials, and serves the state API that Ray Train's own
        # placement-group cleaner polls for DDP trials (behind ReleaseTrainResources)
        # address="local": a Ray of its own even when a `ray start` cluster runs on this machine
        # (plain ray.init() would join that one, whose resources this search did not ask for)
        ray.init(address="local", num_cpus=s.num_cpus or os.cpu_count(), num_gpus=_local_gpus(s),
                 include_dashboard=True, dashboard_port=dashboard_port(), runtime_env=env or None)
    return True


def dashboard_port(preferred: int = 8265) -> int:
    """Ray's usual dashboard port, or a free one when another Ray on this machine holds it
    (two local searches side by side)."""
    import socket

    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free local port for the Ray dashboard")


# -- the phases -----------------------------------------------------------------------------------

def _trial_dirname(trial: Any) -> str:
    return trial.trial_id


def _optuna_storage(plan: Plan) -> Any:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    target = plan.settings.optuna_storage
    if target and "://" in target:
        return optuna.storages.RDBStorage(target)
    return JournalStorage(JournalFileBackend(target or study.journal_path(plan.exp_dir, plan.name)))


def _seed_variants(plan: Plan, search: list[TrialRecord]) -> list[dict[str, Any]]:
    """The best search configurations (by validation) times every seed."""
    rows = results.trials_frame(results.build_row(r, model=plan.space.model, dataset=plan.dataset.name,
                                                  default_seed=plan.settings.seed) for r in search)
    best = results.best_rows(rows, plan.settings.top_k, plan.metric, plan.mode)
    if best.empty:
        raise SearchError("no search trial finished training, so there is no configuration to rerun with --seeds")
    configs = {r.trial_id: results.flat_config(r.config) for r in search}
    return [{**configs[tid], "seed": int(seed), "source_trial": tid}
            for tid in best["trial_id"] for seed in plan.settings.seeds]


def _search_alg(plan: Plan) -> Any:
    """Optuna over the space: one objective, or several (Tune hands Optuna each trial's last
    result, where the costs of a finished run are)."""
    from ray.tune.search.optuna import OptunaSearch

    from glintru.search.objectives import make_sampler

    s = plan.settings
    many = len(plan.objectives) > 1
    return OptunaSearch(space=plan.space.sampler(s.overrides),
                        metric=[o.metric for o in plan.objectives] if many else plan.metric,
                        mode=[o.mode for o in plan.objectives] if many else plan.mode,
                        sampler=make_sampler(plan.sampler, s.seed), study_name=plan.name,
                        storage=_optuna_storage(plan))


def _callbacks(plan: Plan, phase: str, extra: tuple[Any, ...]) -> list[Any]:
    s = plan.settings
    callbacks: list[Any] = list(extra)
    if s.workers_per_trial > 1:
        from glintru.search.trainable import ReleaseTrainResources

        callbacks.append(ReleaseTrainResources())
    if phase == "search" and not s.optuna_storage and results.is_uri(plan.exp_dir):
        callbacks.append(study.upload_callback(plan.exp_dir, plan.name))
    if s.mlflow is not None:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(MLflowLoggerCallback(tracking_uri=s.mlflow or None,
                                              experiment_name=f"{plan.name}-{phase}"))
    return callbacks


def _tuner(plan: Plan, phase: str, trainable: Any, search: list[TrialRecord] | None = None,
           extra_callbacks: tuple[Any, ...] = ()) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = plan.settings
    # every epoch's checkpoint makes Tune snapshot its state (CheckpointConfig(num_to_keep=2)),
    # which is what resuming needs; its warning about frequent snapshots is noise here
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    param_space: dict[str, Any] = {}
    search_alg = None
    num_samples = 1
    scheduler: Any = FIFOScheduler()
    if phase == "search":
        search_alg = _search_alg(plan)
        num_samples = s.num_samples
    elif phase == "grid":
        param_space = {k: tune.grid_search(v) for k, v in s.grid.items()}
        if s.seeds:
            param_space["seed"] = tune.grid_search(list(s.seeds))
    elif phase == "seeds":
        param_space = {VARIANT_KEY: tune.grid_search(_seed_variants(plan, search or []))}
    # with several objectives the searcher holds the metric list (Tune's single metric would replace
    # it), and ASHA gets the first objective itself
    many = phase == "search" and len(plan.objectives) > 1
    if phase != "seeds" and plan.scheduler == "asha":
        # max_t beyond the last epoch, since ASHA stops every trial that reaches max_t; a rung on
        # the last epoch is harmless, as that epoch is reported together with the test metrics
        scheduler = ASHAScheduler(time_attr="epoch", metric=plan.metric if many else None,
                                  mode=plan.mode if many else None, max_t=s.max_epochs + 1,
                                  grace_period=s.grace_period, reduction_factor=s.reduction_factor)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=None if many else plan.metric, mode=None if many else plan.mode,
            search_alg=search_alg, scheduler=scheduler,
            # no fixed cap unless asked: Tune starts a trial whenever one fits, so concurrency follows
            # the cluster as the autoscaler adds nodes (a searcher keeps one trial queued, which
            # is what asks the autoscaler for the next node)
            num_samples=num_samples, max_concurrent_trials=s.max_concurrent,
            trial_dirname_creator=_trial_dirname,
            # a finished single-worker trial hands its process (torch and the package imported, the
            # dataset mapped) to the next trial: seconds saved per trial. A trial still training when
            # it is stopped does not give it up in time, and Tune starts a fresh process instead
            reuse_actors=s.workers_per_trial == 1),
        run_config=tune.RunConfig(
            name=phase, storage_path=plan.tune_storage, callbacks=_callbacks(plan, phase, extra_callbacks),
            verbose=s.verbose, failure_config=tune.FailureConfig(max_failures=s.max_failures),
            # single-worker trials checkpoint through Tune: the last two epochs are enough to resume
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2)),
    )


# a custom resource that cluster/gpu.yaml gives the head node (1000 units): a DDP trial's driver
# asks for one, so that it and its Train controller stay on the head, away from spot GPU nodes
# that the cloud may reclaim
HEAD_RESOURCE = "glintru_head"


def trial_resources(s: SearchSettings) -> dict[str, float]:
    """What Tune reserves for one trial's own process."""
    if s.workers_per_trial == 1:
        # the trial trains in its own process: Tune holds its CPUs and GPU share (0.25: four
        # trials per GPU) and frees them the moment the trial ends
        res = {"CPU": s.cpus_per_trial}
        if s.gpus_per_trial > 0:
            res["GPU"] = s.gpus_per_trial
        return res
    # a DDP trial's process only drives Train, whose workers hold the CPUs and GPUs; Tune needs a
    # non-empty request, so it asks for one byte of memory
    res = {"memory": 1}
    if s.address is not None:
        res[HEAD_RESOURCE] = 1
    return res


def _trainable(plan: Plan, shared: Any) -> Any:
    from ray import tune

    from glintru.search.trainable import TrialSpec, run_trial

    s = plan.settings
    spec = TrialSpec(
        space=plan.space.name, model=plan.space.model, train_storage=plan.train_storage, preset=s.preset,
        overrides=dict(s.overrides),
        train_config={"epochs": s.max_epochs, "eval_mode": s.eval_mode, "seed": s.seed},
        workers=s.workers_per_trial, cpus_per_worker=s.cpus_per_trial / s.workers_per_trial,
        gpus_per_worker=s.gpus_per_trial / s.workers_per_trial,
        log_level="INFO" if s.verbose >= 2 else "WARNING",
        end_metrics=tuple(o.metric for o in plan.objectives if o.k is None))
    return tune.with_resources(tune.with_parameters(run_trial, data=shared, spec=spec), trial_resources(s))


def _run_phase(plan: Plan, phase: str, shared: Any, search: list[TrialRecord] | None = None,
               extra_callbacks: tuple[Any, ...] = ()) -> None:
    from ray import tune

    from glintru.search.trainable import clear_failure

    path = join(plan.tune_storage, phase)
    trainable = _trainable(plan, shared)
    if tune.Tuner.can_restore(path):
        if phase == "search" and not plan.settings.optuna_storage:
            # the restored searcher reopens its journal by path: bring that file up to date first
            # (on another machine it exists only in EXP_DIR)
            study.journal_path(plan.exp_dir, plan.name)
        retry = plan.settings.retry_errored
        if retry:
            for rec in collect_phase(plan, phase):
                if rec.status == "ERROR":
                    clear_failure(plan.train_storage, rec.trial_id)
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=retry)
    else:
        tuner = _tuner(plan, phase, trainable, search, extra_callbacks)
    tuner.fit()


def collect_phase(plan: Plan, phase: str) -> list[TrialRecord]:
    """Every trial of one phase, from Tune's experiment state and the trials' last checkpoints."""
    from ray import tune
    from ray.tune import ExperimentAnalysis

    path = join(plan.tune_storage, phase)
    if not tune.Tuner.can_restore(path):
        return []
    records = []
    for trial in ExperimentAnalysis(path).trials:
        last = dict(trial.last_result or {})
        # a single-worker trial's checkpoints are Tune's (in its trial directory), a DDP trial's are Train's
        tune_checkpoint = last.get("checkpoint_dir_name")
        own = [join(path, trial.trial_id, tune_checkpoint)] if tune_checkpoint else []
        run_dir, run_metrics = results.final_run(plan.train_storage, trial.trial_id, last, checkpoint_dirs=own)
        error = results.error_reason(trial.get_error()) if trial.status == "ERROR" else None
        records.append(TrialRecord(trial_id=trial.trial_id, phase=phase, status=trial.status,
                                   config=dict(trial.config), last_result=last, error=error,
                                   num_failures=trial.num_failures, run_metrics=run_metrics,
                                   run_dir=run_dir))
    return records


def _close_stale_optuna_trials(plan: Plan) -> None:
    """Trials asked for before an interruption and never told stay RUNNING in the study: fail them."""
    import optuna

    try:
        ot_study = optuna.load_study(study_name=plan.name, storage=_optuna_storage(plan))
    except KeyError:
        return
    for t in ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        ot_study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    if not plan.settings.optuna_storage:
        study.upload_journal(plan.exp_dir, plan.name)


def experiment_info(plan: Plan, phase_status: dict[str, str]) -> dict[str, Any]:
    import ray

    s = plan.settings
    return {
        "name": plan.name,
        "space": plan.space.name,
        "model": plan.space.model,
        "dataset": plan.dataset.name,
        "dataset_path": str(plan.dataset.path),
        "dataset_stats": plan.dataset.meta.get("stats", {}),
        "eval_mode": s.eval_mode,
        "metric": plan.metric,
        "mode": plan.mode,
        "objectives": [dataclasses.asdict(o) for o in plan.objectives],
        "sampler": None if s.grid else plan.sampler,
        "scheduler": plan.scheduler,
        "phases": phase_status,
        "settings": s.to_dict(),
        "versions": {"glintru": glintru.__version__, "ray": ray.__version__, "python": sys.version.split()[0]},
    }


# -- Ray start-up on a cluster, interruption ------------------------------------------------------

def check_cluster(s: SearchSettings) -> None:
    """Once joined: a cluster without the head resource would leave DDP trial drivers waiting forever."""
    import ray

    if s.address is None or s.workers_per_trial == 1:
        return
    if ray.cluster_resources().get(HEAD_RESOURCE, 0) < 1:
        _fail(f"--workers-per-trial {s.workers_per_trial} on a cluster: each trial's driver asks for 1 unit of "
              f"the custom resource {HEAD_RESOURCE!r} so that it runs on the head, but this cluster has none. "
              f"Give the head node `resources: {{{HEAD_RESOURCE}: 1000}}` (cluster/gpu.yaml does) or start it "
              f"with ray start --head --resources='{{\"{HEAD_RESOURCE}\": 1000}}'")


def resume_command(plan: Plan) -> str:
    """The exact command line that finishes this experiment."""
    s = plan.settings
    args = ["python", "tune/search.py", "--resume", "--name", plan.name,
            "--storage", results.normalize_location(s.storage)]
    if s.address is not None:
        args += ["--address", s.address]
    if s.num_cpus is not None:
        args += ["--num-cpus", str(s.num_cpus)]
    if s.num_gpus is not None:
        args += ["--num-gpus", str(s.num_gpus)]
    if s.shared_storage:
        args.append("--shared-storage")
    return shlex.join(args)


@contextlib.contextmanager
def sigterm_stops_gracefully():
    """A SIGTERM (a scheduler's time limit, `timeout`, `kill`) takes the path of Ctrl-C: Tune saves
    its state and returns, and the search ends with the resume command. Without this, Ray's own
    handler prints stack traces and the process dies with its state half saved."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def to_interrupt(signum: int, frame: Any) -> None:
        # Tune's SIGINT handler (set during fit) stops the experiment after saving it; outside fit
        # the default one raises KeyboardInterrupt
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, to_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- the whole search -----------------------------------------------------------------------------

def _table(df: Any, sort: list[str], ascending: list[bool], extra: list[str], n: int) -> str:
    import pandas as pd

    ranked = df.sort_values(sort, ascending=ascending, na_position="last").head(n)
    cols = ["trial_id", "phase", "status", "seed"]
    cols += [c for c in ranked.columns if c.startswith("config/") and ranked[c].notna().any()]
    cols += [c for c in dict.fromkeys(extra + ["test/ndcg@10", "test/recall@10", "epochs"]) if c in ranked.columns]
    table = ranked[cols].rename(columns=lambda c: c.split("/", 1)[1] if c.startswith("config/") else c)
    with pd.option_context("display.max_columns", None, "display.width", 200,
                           "display.float_format", "{:.4f}".format):
        return table.to_string(index=False)


def format_best(df: Any, n: int = 10, metric: str = SELECTION_METRIC, mode: str = MODE) -> str:
    """The console table of the best trials by a validation metric."""
    if df.empty:
        return "no trials"
    return _table(df, [metric], [mode == "min"], [metric], n)


def format_pareto(df: Any, objectives: list[Objective], n: int = 50) -> str:
    """The console table of the Pareto-optimal trials, by the first objective."""
    front = df[df["pareto"]] if "pareto" in df.columns else df.iloc[0:0]
    if front.empty:
        return "no finished trial has every objective"
    first = objectives[0]
    return _table(front, [first.metric], [first.mode == "min"], [o.metric for o in objectives], n)


def _run_phases(plan: Plan, callbacks: tuple[Any, ...]) -> list[TrialRecord]:
    from glintru.search.data import share_dataset

    shared = share_dataset(plan.dataset)
    phase_status = {p: "pending" for p in plan.phases}
    if plan.settings.resume:
        phase_status.update(results.read_experiment(plan.exp_dir).get("phases", {}))
    results.write_experiment(plan.exp_dir, experiment_info(plan, phase_status))
    records: list[TrialRecord] = []
    for phase in plan.phases:
        if phase_status.get(phase) != "done":
            phase_status[phase] = "running"
            results.write_experiment(plan.exp_dir, experiment_info(plan, phase_status))
            _run_phase(plan, phase, shared, collect_phase(plan, "search") if phase == "seeds" else None,
                       callbacks)
            unfinished = [r for r in collect_phase(plan, phase) if r.status not in ("TERMINATED", "ERROR")]
            if unfinished:  # Tune returns after Ctrl-C (or SIGTERM) with its state saved
                raise SearchInterrupted(f"{len(unfinished)} trial(s) of phase {phase!r} unfinished; the search "
                                        f"is saved. Finish it with:\n  {resume_command(plan)}")
            phase_status[phase] = "done"
            results.write_experiment(plan.exp_dir, experiment_info(plan, phase_status))
        records += collect_phase(plan, phase)
    return records


def _print_results(plan: Plan, df: Any) -> None:
    print(f"\nbest trials by {plan.metric} ({len(df)} trials, {int((df['status'] == 'ERROR').sum())} errored):")
    print(format_best(df, metric=plan.metric, mode=plan.mode))
    if len(plan.objectives) > 1:
        names = ", ".join(f"{o.name} ({o.mode})" for o in plan.objectives)
        print(f"\nPareto front over {names}: {int(df['pareto'].sum())} of {int(df['completed'].sum())} "
              f"finished trials")
        print(format_pareto(df, plan.objectives))


def run_search(settings: SearchSettings, callbacks: tuple[Any, ...] = ()) -> str:
    """Run (or resume) a search; returns the experiment directory (a path or URI). `callbacks`:
    extra Tune callbacks for every phase (benchmarks use one to time trial starts)."""
    if settings.resume:
        settings = load_settings_for_resume(settings)
    plan = check_settings(settings)

    import ray

    started = start_ray(plan.settings)
    try:
        # after ray.init, which installs a SIGTERM handler of its own in this process
        with sigterm_stops_gracefully():
            check_cluster(plan.settings)
            try:
                records = _run_phases(plan, tuple(callbacks))
            except KeyboardInterrupt:
                raise SearchInterrupted(f"stopped; what Tune saved resumes with:\n  {resume_command(plan)}") from None
            finally:
                if "search" in plan.phases and not plan.settings.optuna_storage:
                    study.upload_journal(plan.exp_dir, plan.name)
            if "search" in plan.phases:
                _close_stale_optuna_trials(plan)
            df = results.write_results(plan.exp_dir, records, model=plan.space.model, dataset=plan.dataset.name,
                                       default_seed=plan.settings.seed, objectives=plan.objectives)
            _print_results(plan, df)
    finally:
        if started:
            ray.shutdown()
    return plan.exp_dir
