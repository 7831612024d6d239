"""From settings to a Plan, before Ray starts: the settings validated (settings.py), then checked
against this machine and the files they name (the dataset, the experiment directory, the storage),
then what follows from them (the experiment directory, the phases, the scheduler)."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shlex
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from glintru.data.dataset import DatasetError, PreparedDataset, load_dataset
from glintru.evaluate import check_mode_fits
from glintru.outputs import KINDS, output_around
from glintru.search import results
from glintru.search.objectives import Objective
from glintru.search.results import SELECTION_METRIC, join
from glintru.search.settings import SearchError, SearchSettings, merge_resumed, validate_settings
from glintru.search.spaces import Space

log = logging.getLogger("glintru")

MODE = "max"
# filesystems that other machines reach too (/proc/mounts types); fuse.* covers gcsfuse, s3fs,
# mountpoint-s3, juicefs and sshfs
NETWORK_FILESYSTEMS = (
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "lustre",
    "gpfs",
    "beegfs",
    "ceph",
    "glusterfs",
    "wekafs",
)


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
    # how the user runs a search, which resume_command repeats (the package's own command unless the
    # caller says another, e.g. `python tune/search.py`)
    command: list[str] = field(default_factory=lambda: ["glintru", "search"])
    # the whole line that finishes the experiment, where a command of its own runs it (a study is
    # resumed by the line that started it); None: the search's own --resume line
    resume_line: str | None = None

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


# -- facts about this machine and its files -------------------------------------------------------


def local_gpus(s: SearchSettings) -> int:
    """GPUs an embedded Ray offers: --num-gpus, else those torch sees."""
    if s.num_gpus is not None:
        return s.num_gpus
    import torch

    return torch.cuda.device_count()


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


def storage_filesystem(s: SearchSettings) -> str | None:
    """The filesystem type of a local --storage path (None for cloud storage)."""
    location = str(s.storage)
    if results.is_uri(location) and not location.startswith("file://"):
        return None
    return filesystem_type(location.removeprefix("file://"))


def check_storage_path(s: SearchSettings) -> None:
    """A local --storage is a directory, or a path that does not exist yet below one: a file there
    would fail only once Ray has started."""
    location = str(s.storage)
    if results.is_uri(location) and not location.startswith("file://"):
        return
    path = Path(location.removeprefix("file://")).expanduser()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise SearchError(
            f"--storage {location}: {existing} is a file, not a directory; choose a directory for the "
            "results (or a path that does not exist yet)"
        )


def default_gpus_per_trial(s: SearchSettings, local_gpus: int) -> float:
    """`--gpus-per-trial` when not given: in local mode one GPU per worker (W with
    `--workers-per-trial W`) when the machine has that many, else 0; with `--address` always 0."""
    if s.gpus_per_trial is not None:
        return s.gpus_per_trial
    if s.address is None and local_gpus >= s.workers_per_trial:
        return float(s.workers_per_trial)
    return 0.0


def check_resources(s: SearchSettings, gpus_per_trial: float, *, cpus: int, gpus: int) -> None:
    """Resources per trial that a worker can use and, in local mode, that this machine (`cpus`,
    `gpus`) has; `gpus_per_trial`: `s.gpus_per_trial` resolved (default_gpus_per_trial)."""
    per_worker_gpu = gpus_per_trial / s.workers_per_trial
    if s.workers_per_trial > 1 and 0 < per_worker_gpu < 1:
        raise SearchError(
            f"--gpus-per-trial {gpus_per_trial:g} over {s.workers_per_trial} DDP workers gives each "
            f"worker a fraction of a GPU; DDP needs one whole GPU per worker "
            f"(use --gpus-per-trial {s.workers_per_trial})"
        )
    if per_worker_gpu > 1:
        raise SearchError(
            f"--gpus-per-trial {gpus_per_trial:g} with {s.workers_per_trial} worker(s) gives a worker "
            f"{per_worker_gpu:g} GPUs, but a worker trains on one; raise --workers-per-trial to "
            f"{math.ceil(gpus_per_trial)}"
        )
    if s.address is not None:
        return  # a cluster's resources are known (and may grow) only once joined
    if s.cpus_per_trial > cpus:
        raise SearchError(
            f"--cpus-per-trial {s.cpus_per_trial:g} exceeds the {cpus} CPUs of this machine "
            f"(lower it, or raise --num-cpus)"
        )
    if gpus_per_trial > 0 and gpus == 0:
        raise SearchError(
            f"--gpus-per-trial {gpus_per_trial:g} needs a GPU, but this machine has none visible "
            f"to torch; use --gpus-per-trial 0, or --address to join a GPU cluster"
        )
    if gpus_per_trial > gpus:
        raise SearchError(f"--gpus-per-trial {gpus_per_trial:g} exceeds the {gpus} GPU(s) of this machine")


def check_storage(s: SearchSettings, fstype: str | None) -> None:
    """On a cluster, trials on every node write checkpoints and results under --storage: a path only
    this machine has (`fstype`: the type of the filesystem holding it) would scatter them over the
    workers' disks."""
    if s.address is None or s.shared_storage:
        return
    location = str(s.storage)
    if results.is_uri(location) and not location.startswith("file://"):
        return
    if fstype and (fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse.")):
        return
    raise SearchError(
        f"--storage {location} is a local path ({fstype or 'unknown'} filesystem), but with --address the "
        f"trials run on other nodes, which cannot reach it: use cloud storage (--storage s3://BUCKET/PATH or "
        f"gs://BUCKET/PATH) or a path on an NFS mount that every node shares (add --shared-storage when "
        f"it is shared in a way this check does not recognise, e.g. a cluster on one machine)"
    )


def check_machine(s: SearchSettings) -> SearchSettings:
    """The resources and storage asked for, against this machine; the settings with
    --gpus-per-trial resolved (a new object: the caller's settings stay as given)."""
    gpus = local_gpus(s) if s.address is None else 0
    gpus_per_trial = default_gpus_per_trial(s, gpus)
    check_storage_path(s)
    check_resources(s, gpus_per_trial, cpus=s.num_cpus or os.cpu_count() or 1, gpus=gpus)
    check_storage(s, storage_filesystem(s) if s.address is not None else None)
    if s.mlflow is not None:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise SearchError("--mlflow needs the mlflow package: pip install mlflow (or drop --mlflow)") from None
    return dataclasses.replace(s, gpus_per_trial=gpus_per_trial)


def load_settings_for_resume(settings: SearchSettings, typed: Collection[str] | None = None) -> SearchSettings:
    """A resumed search's settings: those stored in EXP_DIR/experiment.json plus the flags a resume
    applies; SearchError naming every other flag given with a value the experiment does not have
    (`typed`: the fields whose flags were typed, see merge_resumed)."""
    if not settings.name:
        raise SearchError("--resume needs --name (the experiment to resume) and the same --storage")
    exp_dir = join(results.normalize_location(settings.storage), settings.name)
    if not results.exists(join(exp_dir, results.EXPERIMENT_FILE)):
        raise SearchError(
            f"nothing to resume: {exp_dir} holds no {results.EXPERIMENT_FILE} (check --name and --storage)"
        )
    return merge_resumed(settings, results.read_experiment(exp_dir)["settings"], typed)


# -- the plan -------------------------------------------------------------------------------------


def plan_search(settings: SearchSettings) -> Plan:
    """Every check that can run before Ray starts (SearchError with the fix), then the plan.
    `settings` is not changed; the plan holds a copy with the defaults filled in."""
    space, objectives, sampler = validate_settings(settings)
    s = check_machine(settings)
    try:
        dataset = load_dataset(s.data)
    except DatasetError as e:
        raise SearchError(f"--data: {e}") from None
    try:
        check_mode_fits(s.eval_mode, dataset.n_items)
    except ValueError as e:
        raise SearchError(f"--eval-mode: {e}") from None
    name = s.name or f"{space.name}-{dataset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    exp_dir = join(results.normalize_location(s.storage), name)
    if not results.is_uri(exp_dir):
        around = output_around(exp_dir)
        if around is not None:  # its files are another command's: a later --overwrite there deletes them
            raise SearchError(
                f"--storage {s.storage}: the experiment {exp_dir} would be inside {KINDS[around[0]]}, "
                f"{around[1]}; choose a --storage outside it"
            )
    if not s.resume and results.exists(exp_dir):
        raise SearchError(
            f"experiment {exp_dir} already exists; resume it with --resume --name {name} or choose another --name"
        )
    phases = ["grid"] if s.grid else (["search", "seeds"] if s.seeds else ["search"])
    # ASHA watches one metric: with several objectives it runs only when asked, on the first
    scheduler = s.scheduler or ("fifo" if s.grid or len(objectives) > 1 else "asha")
    plan = Plan(
        settings=dataclasses.replace(s, name=name),
        space=space,
        dataset=dataset,
        exp_dir=exp_dir,
        phases=phases,
        scheduler=scheduler,
        objectives=objectives,
        sampler=sampler,
    )
    log.info(
        "search %s: space %s, dataset %s, phases %s, scheduler %s, sampler %s",
        exp_dir,
        space.name,
        dataset.name,
        "+".join(phases),
        scheduler,
        sampler if not s.grid else "none",
    )
    return plan


def resume_command(plan: Plan) -> str:
    """The exact command line that finishes this experiment."""
    if plan.resume_line is not None:
        return plan.resume_line
    s = plan.settings
    args = [
        *plan.command,
        "--resume",
        "--name",
        plan.name,
        "--storage",
        results.normalize_location(s.storage),
    ]
    if s.address is not None:
        args += ["--address", s.address]
    if s.num_cpus is not None:
        args += ["--num-cpus", str(s.num_cpus)]
    if s.num_gpus is not None:
        args += ["--num-gpus", str(s.num_gpus)]
    if s.shared_storage:
        args.append("--shared-storage")
    return shlex.join(args)
