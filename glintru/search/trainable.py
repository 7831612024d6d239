"""The Tune trainable: each trial is one Ray Train run of `glintru.train.train` on its workers.

Tune calls `run_trial(config)` (a function trainable); it starts a TorchTrainer whose workers call
the one training loop with their rank and world size, report every epoch with a checkpoint, and
resume from the latest checkpoint when the trial is retried after a failure.
"""

from __future__ import annotations

import json
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import ray.exceptions
import ray.train
import ray.train.torch
import ray.tune
from ray.tune.integration.ray_train import TuneReportCallback

from glintru.search.data import SharedDataset, fetch_dataset, in_shared_memory
from glintru.search.results import (FINAL_FILE, FINAL_KEY, RUN_FIELDS, exists, filesystem, flat_config, join,
                                    read_bytes, write_bytes)
from glintru.search.spaces import get_space
from glintru.train import EpochReport, TrainConfig, train

FAILED_FILE = "failed.json"  # written beside a run's checkpoints after an error in user code
# every report names the placement group holding the trial's Train workers, so that the driver can
# release it when Tune stops the trial (see ReleaseTrainResources)
PLACEMENT_GROUP_KEY = "placement_group"


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
    train_storage: str                  # where Train keeps each trial's checkpoints (path or URI)
    preset: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)      # fixed model/train settings
    train_config: dict[str, Any] = field(default_factory=dict)   # TrainConfig fields
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    log_level: str = "WARNING"          # Ray Train's own logs (every report at INFO)


def trial_overrides(spec: TrialSpec, config: dict[str, Any]) -> dict[str, Any]:
    """The settings one trial trains with: its sampled config, then the fixed overrides (space
    labels such as `ablation` expanded)."""
    return get_space(spec.space).to_overrides({**flat_config(config), **spec.overrides})


def run_trial(config: dict[str, Any], *, data: SharedDataset, spec: TrialSpec) -> None:
    """Tune function trainable: one Ray Train run for this trial's config."""
    trial_start = time.time()
    trial_id = ray.tune.get_context().get_trial_id()
    earlier = _read_failure(spec.train_storage, trial_id)
    if earlier is not None:
        # the same code and config failed in user code before: retrying would fail again
        raise TrialError(earlier["reason"], earlier.get("details", ""))

    resources = {"CPU": spec.cpus_per_worker}
    if spec.gpus_per_worker > 0:
        resources["GPU"] = spec.gpus_per_worker
    trainer = ray.train.torch.TorchTrainer(
        _train_worker,
        train_loop_config={
            "data": data,
            "model": spec.model,
            "preset": spec.preset,
            "overrides": trial_overrides(spec, config),
            "train_config": spec.train_config,
            "threads": max(1, int(spec.cpus_per_worker)),
            "trial_start": trial_start,
            "quiet": spec.log_level.upper() != "INFO",
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=spec.workers, use_gpu=spec.gpus_per_worker > 0, resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            # the trial id keeps (storage, name) fixed across retries, so Train restores the run
            name=trial_id,
            storage_path=spec.train_storage,
            # failures surface to Tune, whose FailureConfig retries the whole trial; the new
            # TorchTrainer finds this run's checkpoints under the same name and resumes
            failure_config=ray.train.FailureConfig(max_failures=0),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=[TuneReportCallback()],
            logging_config=ray.train.LoggingConfig(log_level=spec.log_level),
        ),
    )
    try:
        trainer.fit()
    except ray.train.TrainingFailedError as e:
        reason, details, in_user_code = describe_failure(e)
        if in_user_code:
            _write_failure(spec.train_storage, trial_id, reason, details)
        raise TrialError(reason, details) from None


class ReleaseTrainResources(ray.tune.Callback):
    """Frees the CPUs and GPUs of a trial's Train workers as soon as Tune ends the trial.

    A trial that Tune stops (ASHA, a stop criterion, a retry after a failure) loses its Train
    controller, but the workers' placement group belongs to the job and outlives it. Ray Train
    removes it from a detached actor that polls the state API, which lags or stalls on a busy
    machine; meanwhile the next trials cannot start. The driver knows the group from the
    trial's reports and removes it at once.
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


def release_placement_group(pg_id: str) -> bool:
    """Remove a placement group by its hex id unless it is gone already; True if removed."""
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    pg = PlacementGroup(PlacementGroupID(bytes.fromhex(pg_id)))
    try:
        state = placement_group_table(pg).get("state", "REMOVED")
    except Exception:  # an unknown id: nothing to free
        return False
    if state == "REMOVED":
        return False
    remove_placement_group(pg)
    return True


def describe_failure(error: Exception) -> tuple[str, str, bool]:
    """(one-line reason, worker traceback, whether it came from user code on every failed worker).

    A lost node or a killed worker is not user code: those failures are worth retrying.
    """
    failures = getattr(error, "worker_failures", None)
    if not failures:
        cause = getattr(error, "controller_failure", error)
        return f"{type(cause).__name__}: {_first_line(cause)}", str(error), False
    in_user_code = True
    reason, details = "", ""
    for rank in sorted(failures):
        exc = failures[rank]
        base = getattr(exc, "_base_exc", None)  # Train wraps user exceptions with their traceback
        if base is None or isinstance(base, ray.exceptions.RayError):
            in_user_code = False
            base = exc
        if not reason:
            reason = f"{type(base).__name__}: {_first_line(base)}"
            details = str(exc)
    return reason, details, in_user_code


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _write_failure(train_storage: str, trial_id: str, reason: str, details: str) -> None:
    write_bytes(join(train_storage, trial_id, FAILED_FILE),
                json.dumps({"reason": reason, "details": details}).encode())


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


# -- inside each Ray Train worker -----------------------------------------------------------------

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


def _train_worker(cfg: dict[str, Any]) -> None:
    entered = time.time()
    ctx = ray.train.get_context()
    rank, world_size = ctx.get_world_rank(), ctx.get_world_size()
    ds = fetch_dataset(cfg["data"])
    device = ray.train.torch.get_device()
    if cfg.get("quiet"):
        _quiet_report_log()
    now = time.time()
    # where a trial's start-up time goes: starting Train's actors, then fetching the data
    info = {
        "node": ray.get_runtime_context().get_node_id(),
        "host": platform.node(),
        "device": str(device),
        "data_zero_copy": bool(in_shared_memory(ds)),
        "worker_start_seconds": entered - cfg["trial_start"],
        "data_fetch_seconds": now - entered,
        "setup_seconds": now - cfg["trial_start"],
        PLACEMENT_GROUP_KEY: ray.get_runtime_context().get_placement_group_id() or "",
    }
    scratch = Path(tempfile.mkdtemp(prefix="glintru-trial-"))
    try:
        resume_from = None
        restored = ray.train.get_checkpoint()
        if restored is not None:
            local = scratch / "restored"
            restored.to_directory(str(local))
            if (local / FINAL_FILE).exists():  # finished before the retry: report it again
                _report_final(local, rank, info)
                return
            resume_from = local
        report_seconds: list[float] = []

        def reporter(r: EpochReport) -> None:
            metrics = {FINAL_KEY: False, "epoch": r.epoch, "train_loss": r.train_loss,
                       "best_epoch": r.best_epoch, "epoch_seconds": r.seconds, **info,
                       "report_seconds": statistics.mean(report_seconds) if report_seconds else 0.0,
                       **_prefixed("valid", r.best_valid), **_prefixed("epoch_valid", r.valid)}
            checkpoint = ray.train.Checkpoint.from_directory(r.checkpoint_dir) if r.checkpoint_dir else None
            t = time.perf_counter()
            ray.train.report(metrics, checkpoint=checkpoint, delete_local_checkpoint_after_upload=False)
            report_seconds.append(time.perf_counter() - t)

        config = TrainConfig(**{**cfg["train_config"], "device": str(device), "num_threads": cfg["threads"]})
        result = train(ds, cfg["model"], scratch / "run", preset=cfg["preset"], overrides=cfg["overrides"],
                       config=config, rank=rank, world_size=world_size, reporter=reporter,
                       resume_from=resume_from, progress=False)
        info["report_seconds"] = statistics.mean(report_seconds) if report_seconds else 0.0
        # the final checkpoint is the run directory without its resumable training state
        shutil.rmtree(result.out_dir / "checkpoint", ignore_errors=True)
        _report_final(result.out_dir, rank, info)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _quiet_report_log() -> None:
    """Ray Train logs every report with all its metrics at INFO under a logger that its
    LoggingConfig does not reach (named by the module's file); keep it to warnings."""
    import logging

    try:
        from ray.train.v2._internal.execution import context
    except ImportError:
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def _report_final(run_dir: Path, rank: int, info: dict[str, Any]) -> None:
    if rank != 0:
        ray.train.report({})  # every rank must report the same number of times
        return
    run_metrics = json.loads((run_dir / FINAL_FILE).read_text())
    ray.train.report({**info, **final_metrics(run_metrics)},
                     checkpoint=ray.train.Checkpoint.from_directory(run_dir),
                     delete_local_checkpoint_after_upload=False)
