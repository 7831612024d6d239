"""The Tune trainable: every trial runs the one training loop, `glintru.train.train`.

Two launchers of the same loop. A single-worker trial calls it inside its Tune function
trainable: Tune holds the trial's CPUs and GPU share in its own placement group, so an ASHA stop
frees them at once and a trial starts in about a second. A multi-worker trial starts a Ray Train
TorchTrainer whose DDP workers call it with their rank and world size. Both report every epoch
with a checkpoint and resume from the latest one when Tune retries the trial.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import ray.exceptions
import ray.tune

from glintru.search.data import SharedDataset, fetch_dataset, in_shared_memory
from glintru.search.objectives import test_metric
from glintru.search.results import (
    FINAL_FILE,
    FINAL_KEY,
    RUN_FIELDS,
    exists,
    filesystem,
    flat_config,
    join,
    read_bytes,
    write_bytes,
)
from glintru.search.spaces import get_space
from glintru.train import EpochReport, TrainConfig, resolve_configs, train

FAILED_FILE = "failed.json"  # written beside a run's checkpoints after an error in user code
REPLAYED = "(the failure of an earlier attempt, recorded in failed.json; this attempt trained nothing)"
# every report of a DDP trial names the placement group holding its Train workers, so that the
# driver can release it when Tune stops the trial (see ReleaseTrainResources)
PLACEMENT_GROUP_KEY = "placement_group"

# (metrics, checkpoint directory or None) -> None: how one launcher hands a report to Tune
Report = Callable[[dict[str, Any], "Path | None"], None]


class TrialError(RuntimeError):
    """A trial's training run failed; the first line of the message is the reason."""

    def __init__(self, reason: str, details: str = ""):
        super().__init__(reason + (f"\n\n{details}" if details else ""))
        self.reason = reason


@dataclass(frozen=True)
class TrialSpec:
    """What every trial of a phase shares; the trial's own config adds the sampled values."""

    space: str
    model: str
    train_storage: str  # failure markers and DDP trials' checkpoints (path or URI)
    preset: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # fixed model/train settings
    train_config: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    log_level: str = "WARNING"  # Ray Train's own logs (DDP trials)
    # objectives known only once a run ends (infer_ms_per_batch): every epoch reports them as NaN,
    # since Tune requires each searched metric in every report
    end_metrics: tuple[str, ...] = ()
    # the searched metrics (valid/ndcg@10, infer_ms_per_batch): first in every report, so that
    # Tune's progress table, which shows a trial's first few numeric metrics, shows them
    objective_metrics: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrialJob:
    """One trial as the loop runs it: the phase's spec and what is the trial's own. A DDP trial
    pickles it to its Ray Train workers."""

    spec: TrialSpec
    data: SharedDataset
    overrides: dict[str, Any]  # the sampled config with the spec's fixed settings (trial_overrides)
    trial_start: float  # wall clock at the trial's launch, where its set-up time counts from

    @property
    def threads(self) -> int:
        return max(1, int(self.spec.cpus_per_worker))


def console_first(metrics: dict[str, Any], objectives: tuple[str, ...]) -> dict[str, Any]:
    """`metrics` reordered for Tune's progress table: epoch, training loss, each objective and, for
    a validation metric, its test value (in the final report), then everything else as it was."""
    lead = ["epoch", "train_loss"]
    for name in objectives:
        test = test_metric(name)
        lead += [name, test] if test else [name]
    head = {k: metrics[k] for k in lead if k in metrics}
    return {**head, **{k: v for k, v in metrics.items() if k not in head}}


def trial_overrides(spec: TrialSpec, config: dict[str, Any]) -> dict[str, Any]:
    """The settings one trial trains with: its sampled config, then the fixed overrides (space
    labels such as `ablation` expanded)."""
    return get_space(spec.space).to_overrides({**flat_config(config), **spec.overrides})


def run_trial(config: dict[str, Any], *, data: SharedDataset, spec: TrialSpec) -> None:
    """Tune function trainable: train this trial's config in this process or on DDP workers."""
    trial_start = time.time()
    trial_id = ray.tune.get_context().get_trial_id()
    earlier = _read_failure(spec.train_storage, trial_id)
    if earlier is not None:
        # the same code and config failed in user code before: fail at once, training nothing
        raise TrialError(earlier["reason"], f"{REPLAYED}\n\n{earlier.get('details', '')}")
    job = TrialJob(spec, data, trial_overrides(spec, config), trial_start)
    if spec.workers == 1:
        _run_in_trial(job, trial_id)
    else:
        _run_on_train_workers(job, trial_id)


# -- launcher 1: the loop inside the trial's own process ------------------------------------------


def _trial_device(gpus: float) -> str:
    if gpus <= 0:
        return "cpu"
    if not ray.get_gpu_ids():
        raise RuntimeError(f"the trial asked for {gpus:g} GPU but Ray assigned none")
    # Ray limits CUDA_VISIBLE_DEVICES of the trial's process to the GPU it assigned (a fraction of
    # it with --gpus-per-trial 0.25), so that GPU is the process's first device
    return "cuda:0"


def _tune_report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
    checkpoint = ray.tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
    ray.tune.report(metrics, checkpoint=checkpoint)


def _run_in_trial(job: TrialJob, trial_id: str) -> None:
    spec = job.spec
    if spec.log_level.upper() != "INFO":
        # Ray logs every persisted checkpoint at INFO, one line per epoch and trial
        import logging

        logging.getLogger("ray.train").setLevel(logging.WARNING)
    try:
        device = _trial_device(spec.gpus_per_worker)
        ds, info = fetch_and_describe(job, device)
        train_and_report(
            job, ds, info, rank=0, world_size=1, device=device, report=_tune_report, restored=ray.tune.get_checkpoint()
        )
    except ray.exceptions.RayError:
        raise  # Ray's own failure (a lost object or node): Tune retries from the last checkpoint
    except Exception as e:
        # an error of the training code itself (NaN loss, a bad config): retrying fails the same
        # way, so it is recorded once and every retry Tune makes ends before training
        reason = f"{type(e).__name__}: {_first_line(e)}"
        details = traceback.format_exc()
        _write_failure(spec.train_storage, trial_id, reason, details)
        raise TrialError(reason, details) from None


# -- launcher 2: a Ray Train TorchTrainer of DDP workers ------------------------------------------


def _run_on_train_workers(job: TrialJob, trial_id: str) -> None:
    import ray.train
    import ray.train.torch
    from ray.tune.integration.ray_train import TuneReportCallback

    spec = job.spec
    resources = {"CPU": spec.cpus_per_worker}
    if spec.gpus_per_worker > 0:
        resources["GPU"] = spec.gpus_per_worker
    trainer = ray.train.torch.TorchTrainer(
        _train_worker,
        train_loop_config={"job": job},
        scaling_config=ray.train.ScalingConfig(
            num_workers=spec.workers, use_gpu=spec.gpus_per_worker > 0, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            # the trial id keeps (storage, name) fixed across retries, so Train restores the run
            name=trial_id,
            storage_path=spec.train_storage,
            # failures surface to Tune, whose FailureConfig retries the whole trial; the new
            # TorchTrainer finds this run's checkpoints under the same name and resumes
            failure_config=ray.train.FailureConfig(max_failures=0),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            # Train V2's RunConfig takes both; Ray's annotations resolve ray.train.RunConfig to the
            # older ray.air class, which has neither a logging_config nor Train V2 callbacks
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]
            logging_config=ray.train.LoggingConfig(log_level=spec.log_level),
        ),  # type: ignore[call-arg]
    )
    try:
        trainer.fit()
    except ray.train.TrainingFailedError as e:
        reason, details, in_user_code = describe_failure(e)
        if in_user_code:
            _write_failure(spec.train_storage, trial_id, reason, details)
        raise TrialError(reason, details) from None


def describe_failure(error: Exception) -> tuple[str, str, bool]:
    """(one-line reason, worker traceback, whether it came from user code on every failed worker).

    Ray Train hands over the workers' own exceptions (a FloatingPointError, not a wrapper); a
    lost node or a killed worker arrives as a Ray error and is worth retrying.
    """
    failures = getattr(error, "worker_failures", None)
    if not failures:
        cause = getattr(error, "controller_failure", error)
        return f"{type(cause).__name__}: {_first_line(cause)}", str(error), False
    in_user_code = True
    reason, details = "", ""
    for rank in sorted(failures):
        exc = failures[rank]
        if isinstance(exc, ray.exceptions.RayError):
            in_user_code = False
        if not reason:
            reason = f"{type(exc).__name__}: {_first_line(exc)}"
            details = "".join(traceback.format_exception(exc))
    return reason, details, in_user_code


def _train_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    job: TrialJob = config["job"]
    ctx = ray.train.get_context()

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint, delete_local_checkpoint_after_upload=False)

    device = str(ray.train.torch.get_device())
    ds, info = fetch_and_describe(
        job, device, {PLACEMENT_GROUP_KEY: ray.get_runtime_context().get_placement_group_id() or ""}
    )
    train_and_report(
        job,
        ds,
        info,
        rank=ctx.get_world_rank(),
        world_size=ctx.get_world_size(),
        device=device,
        report=report,
        restored=ray.train.get_checkpoint(),
    )


class ReleaseTrainResources(ray.tune.Callback):
    """Frees the CPUs and GPUs of a DDP trial's Train workers as soon as Tune ends the trial.

    A DDP trial that Tune stops (ASHA, a retry after a failure) loses its Train controller, but
    the workers' placement group belongs to the job and outlives it; Ray Train's own cleaner
    polls the state API, which lags on a busy machine while the next trials wait. The driver
    knows the group from the trial's reports and removes it at once. (Single-worker trials hold
    Tune's own placement group, which Tune frees itself.)
    """

    def __init__(self) -> None:
        self.released: list[str] = []

    def _release(self, trial: Any) -> None:
        pg_id = (trial.last_result or {}).get(PLACEMENT_GROUP_KEY)
        if pg_id and release_placement_group(pg_id):
            self.released.append(pg_id)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._release(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._release(trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._release(trial)


def placement_group_from_hex(pg_id: str) -> Any:
    """The PlacementGroup handle of a hex id.

    The one use of a private Ray API in the search: Ray offers no public way to rebuild a handle
    from an id that another process reported. tests/search/test_trials.py checks that it
    still exists, so a Ray upgrade that moves it fails there, loudly.
    """
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup

    return PlacementGroup(PlacementGroupID(bytes.fromhex(pg_id)))


def release_placement_group(pg_id: str) -> bool:
    """Remove a placement group by its hex id unless it is gone already; True if removed."""
    from ray.util.placement_group import placement_group_table, remove_placement_group

    pg = placement_group_from_hex(pg_id)
    try:
        state = placement_group_table(pg).get("state", "REMOVED")
    except Exception:  # an unknown id: nothing to free
        return False
    if state == "REMOVED":
        return False
    remove_placement_group(pg)
    return True


# -- failures in user code ------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _write_failure(train_storage: str, trial_id: str, reason: str, details: str) -> None:
    write_bytes(join(train_storage, trial_id, FAILED_FILE), json.dumps({"reason": reason, "details": details}).encode())


def _read_failure(train_storage: str, trial_id: str) -> dict[str, str] | None:
    path = join(train_storage, trial_id, FAILED_FILE)
    return json.loads(read_bytes(path).decode()) if exists(path) else None


def clear_failure(train_storage: str, trial_id: str) -> bool:
    """Forget a trial's user-code failure so that a resumed search runs it again."""
    path = join(train_storage, trial_id, FAILED_FILE)
    if not exists(path):
        return False
    fs, fs_path = filesystem(path)
    fs.delete_file(fs_path)
    return True


# -- the loop and its reports, shared by both launchers -------------------------------------------


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}/{k}": float(v) for k, v in metrics.items()}


def final_metrics(run_metrics: dict[str, Any]) -> dict[str, Any]:
    """The last report of a finished run, from its metrics.json."""
    out: dict[str, Any] = {FINAL_KEY: True}
    history = run_metrics.get("history") or []
    out["epoch"] = history[-1]["epoch"] if history else run_metrics.get("epochs", 0)
    out.update(_prefixed("valid", run_metrics["valid"]))
    out.update(_prefixed("test", run_metrics["test"]))
    for key in RUN_FIELDS:
        if key in run_metrics:
            out[key] = run_metrics[key]
    return out


def epoch_metrics(
    r: EpochReport, info: dict[str, Any], spec: TrialSpec, select_metric: str, report_seconds: float
) -> dict[str, Any]:
    """The report of an epoch that does not end training: the best validation so far (what ASHA,
    Optuna and trials.parquet read) and the epoch's own value of the metric that selects."""
    return {
        FINAL_KEY: False,
        "epoch": r.epoch,
        "train_loss": r.train_loss,
        "best_epoch": r.best_epoch,
        "epoch_seconds": r.seconds,
        **info,
        "report_seconds": report_seconds,
        **dict.fromkeys(spec.end_metrics, float("nan")),
        **_prefixed("valid", r.best_valid),
        f"epoch_valid/{select_metric}": float(r.valid[select_metric]),
    }


def fetch_and_describe(job: TrialJob, device: str, extra: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """The trial's dataset from the object store, and what every report says about the trial."""
    entered = time.time()
    ds = fetch_dataset(job.data)
    now = time.time()
    # where a trial's start-up time goes: starting Train's actors (DDP trials), fetching the data
    info = {
        "node": ray.get_runtime_context().get_node_id(),
        "host": platform.node(),
        "device": device,
        "data_zero_copy": bool(in_shared_memory(ds)),
        "worker_start_seconds": entered - job.trial_start,
        "data_fetch_seconds": now - entered,
        "setup_seconds": now - job.trial_start,
        "train_call_time": now,
        **(extra or {}),
    }  # wall clock, to time a trial from its launch
    return ds, info


def train_and_report(
    job: TrialJob,
    ds: Any,
    info: dict[str, Any],
    *,
    rank: int,
    world_size: int,
    device: str,
    report: Report,
    restored: Any,
) -> None:
    """Run train() for one trial and report every epoch; the epoch that ends training is reported
    together with the test metrics, in one report, so that a scheduler (ASHA) acting on it can no
    longer stop the trial between its last epoch and its test evaluation."""
    spec = job.spec
    _, cfg = resolve_configs(spec.model, spec.preset, job.overrides, TrainConfig(**spec.train_config))
    cfg = dataclasses.replace(cfg, device=device, num_threads=job.threads)

    def send(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:  # every report leaves here
        report(console_first(metrics, spec.objective_metrics), checkpoint_dir)

    scratch = Path(tempfile.mkdtemp(prefix="glintru-trial-"))
    try:
        resume_from = None
        if restored is not None:
            local = scratch / "restored"
            restored.to_directory(str(local))
            if (local / FINAL_FILE).exists():  # finished before the retry: report it again
                _report_final(local, rank, info, send)
                return
            resume_from = local
        report_seconds: list[float] = []

        def reporter(r: EpochReport) -> None:
            if r.final:
                return  # reported with the test metrics below
            mean_seconds = statistics.mean(report_seconds) if report_seconds else 0.0
            t = time.perf_counter()
            send(epoch_metrics(r, info, spec, cfg.select_metric, mean_seconds), r.checkpoint_dir)
            report_seconds.append(time.perf_counter() - t)

        result = train(
            ds,
            spec.model,
            scratch / "run",
            preset=spec.preset,
            overrides=job.overrides,
            config=cfg,
            rank=rank,
            world_size=world_size,
            reporter=reporter,
            resume_from=resume_from,
            progress=False,
        )
        info["report_seconds"] = statistics.mean(report_seconds) if report_seconds else 0.0
        # the final checkpoint is the run directory without its resumable training state
        shutil.rmtree(result.out_dir / "checkpoint", ignore_errors=True)
        _report_final(result.out_dir, rank, info, send)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _report_final(run_dir: Path, rank: int, info: dict[str, Any], report: Report) -> None:
    if rank != 0:
        report({}, None)  # every rank must report the same number of times
        return
    run_metrics = json.loads((run_dir / FINAL_FILE).read_text())
    report({**info, **final_metrics(run_metrics)}, run_dir)
