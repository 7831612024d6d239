"""The one training loop: local runs call it directly, Ray Train workers call it with a rank.

Cross-entropy over all items, Adam, validation every epoch, early stopping on the validation
metric `select_metric` (NDCG@10 unless set), best weights kept, test evaluated once at the end,
resumable checkpoints.
An epoch runs one of three pipelines over the same targets: one-pass (each user's history
encoded once, a loss at every target position; models where that is exact), length-bucketed
per-prefix batches, or random per-prefix batches. `benchmarks/efficiency.py` times the loop's own
step (`train_step`) over the same loaders (BatchLoader, SequenceLoader); `benchmarks/search_overhead.py`
runs `train` itself.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glintru.data.batches import Batch, BatchLoader, split_inputs
from glintru.data.dataset import PreparedDataset, load_dataset
from glintru.data.sequences import SequenceBatch, SequenceLoader
from glintru.evaluate import METRICS, EvalResult, check_mode_fits, evaluate, parse_mode, protocol, write_per_user
from glintru.models import build_model, get_model_class, resolve_config
from glintru.models.base import ModelConfig, SequentialRecommender
from glintru.outputs import RUN, mark
from glintru.settings import check_fields

CHECKPOINT_FILE = "checkpoint.pt"
# in the run directory while a run that stopped on a non-finite loss or weights is not yet resumed
FAILED_FILE = "failed.json"
# what TrainState.from_checkpoint reads besides the state's own fields
CHECKPOINT_KEYS = ("model_name", "model", "optimizer", "torch_rng")
INFER_BATCH = 2048
# optimiser steps between checks that the loss is finite: a check waits for the device
NAN_CHECK_STEPS = 50

log = logging.getLogger("glintru")


@dataclass
class TrainConfig:
    epochs: int = 200
    patience: int = 10
    lr: float = 1e-3
    batch_size: int = 2048
    eval_batch_size: int = 2048
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_mode: str = "full"  # full | uniN | popN | popN-recbole
    bf16: bool = False  # autocast to bfloat16 on CUDA
    ks: tuple[int, ...] = (5, 10, 20)
    num_threads: int | None = None  # torch CPU threads; None keeps torch's default
    grad_clip: float | None = None
    bucketing: bool = True  # per-prefix batches grouped by prefix length (False: random batches)
    # One pass per user history, a loss at every target: None = where the model makes it exact,
    # True = required (an error names why where it is not exact), False = per-prefix batches.
    # Dropout masks are then drawn once per history rather than once per prefix.
    one_pass: bool | None = None
    # the validation metric that picks the best epoch and counts patience (a search sets its objective)
    select_metric: str = "ndcg@10"

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    def validate(self) -> None:
        """Every field's type and value, without touching data or devices (the search checks its
        configurations on a driver that may have no GPU)."""
        check_fields(type(self), dataclasses.asdict(self), "training")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        for name in ("lr", "batch_size", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        self._validate_ranges()
        if any(k < 1 for k in self.ks):  # found here, not at the first validation after an epoch
            raise ValueError(f"ks must be positive integers, got {self.ks}")
        self._validate_select_metric()
        parse_mode(self.eval_mode)
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError:
                raise ValueError(
                    f"device {self.device!r} is not a device; expected auto, cpu, cuda or cuda:N"
                ) from None

    def _validate_ranges(self) -> None:
        """Values of the right type that no run means, each of which would otherwise run."""
        largest = torch.finfo(torch.float32).max
        if not self.lr <= largest:  # also NaN
            # Adam's first step moves every weight by about lr, which a float32 weight cannot hold
            raise ValueError(
                f"lr={self.lr:g} overflows the first step (a float32 weight holds at most {largest:.1e}); "
                "the usual range is 1e-4 to 1e-2"
            )
        if not 0 <= self.weight_decay <= largest:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        # a negative norm would reverse every gradient, and 0 would silently clip nothing
        if self.grad_clip is not None and not 0 < self.grad_clip <= largest:
            raise ValueError(
                f"grad_clip must be positive (the largest gradient norm a step keeps; None clips nothing), "
                f"got {self.grad_clip}"
            )
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 (None keeps torch's default), got {self.num_threads}")
        if not 0 <= self.seed < 2**32:  # numpy's seed range
            raise ValueError(f"seed must be an integer in [0, 2**32), got {self.seed}")

    def _validate_select_metric(self) -> None:
        name, _, k = self.select_metric.partition("@")
        if name not in METRICS or not k.isdigit():
            raise ValueError(
                f"select_metric must be a ranking metric at a cut-off, one of {', '.join(METRICS)} "
                f"followed by @k (e.g. ndcg@10); got {self.select_metric!r}"
            )
        if int(k) not in self.ks:
            raise ValueError(f"ks must contain {k} (select_metric is {self.select_metric}); got {self.ks}")


# TrainConfig fields a resumed run applies as given: how long it trains and where. Any other value
# would be ignored (the restored optimizer keeps its lr and weight decay) or would hold for the later
# epochs only, and config.json would misstate the run.
RESUME_APPLIES = ("epochs", "patience", "device", "num_threads", "eval_batch_size")


@dataclass
class EpochStats:
    """What one training epoch did: mean loss per target, wall time and the work it took."""

    train_loss: float
    seconds: float
    steps: int
    targets: int  # training targets (samples) this rank saw
    mean_padded_width: float  # batch width (padded sequence length) averaged over steps


@dataclass
class EpochReport:
    epoch: int
    train_loss: float
    valid: dict[str, float]
    best_epoch: int
    best_valid: dict[str, float]
    seconds: float
    checkpoint_dir: Path | None
    final: bool  # training ends after this epoch (its last one, or patience used up)


@dataclass
class RunResult:
    out_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)  # empty on ranks other than 0
    model: torch.nn.Module | None = None  # holding the best weights


def split_overrides(model_name: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route `--set key=value` pairs to the model config or the train config."""
    model_fields = get_model_class(model_name).config_class.field_names()
    train_fields = TrainConfig.field_names()
    model_over, train_over, unknown = {}, {}, []
    for k, v in overrides.items():
        if k in model_fields:
            model_over[k] = v
        elif k in train_fields:
            train_over[k] = v
        else:
            unknown.append(k)
    if unknown:
        raise ValueError(
            f"unknown setting(s) {', '.join(sorted(unknown))} for model {model_name}; model keys: "
            f"{', '.join(sorted(model_fields))}; training keys: {', '.join(sorted(train_fields))}"
        )
    return model_over, train_over


def resolve_configs(
    model_name: str,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
) -> tuple[ModelConfig, TrainConfig]:
    """The run's model and training configs, every setting checked (keys, types, values) and nothing
    else done: a caller can refuse bad settings before it loads data or writes a file."""
    model_over, train_over = split_overrides(model_name, dict(overrides or {}))
    base = dataclasses.asdict(config or TrainConfig())
    # typed (ints widened to float, lists to tuples) before validate() compares them
    cfg = TrainConfig(**check_fields(TrainConfig, {**base, **train_over}, "training"))
    cfg.validate()
    return resolve_config(model_name, preset, model_over), cfg


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available (use --device cpu)")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def environment(device: torch.device) -> dict[str, Any]:
    import glintru
    from glintru.provenance import source_revision

    env: dict[str, Any] = {
        "glintru": glintru.__version__,
        "code": source_revision(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "hostname": platform.node(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def release_memory() -> bool:
    """Hand the memory earlier runs of this process freed back to the system: collect unreachable
    objects, then (glibc) trim every malloc arena. A search's reused trial process runs each trial
    in a new thread, so each trial allocates from another arena; without the trim the freed pages of
    the earlier trials stay resident and count in this run's peak. False where there is no glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True


def reset_peak_memory(device: torch.device) -> None:
    """Start a run's peak-memory count afresh: a process that trains several runs one after another
    (a search's reused trial process) must not report an earlier run's peak, nor the memory those
    runs freed but the allocator still holds, as this one's."""
    release_memory()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: "5" resets the resident-set peak (VmHWM) of this process
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _resident_peak_kib() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # CPU runs: the process's resident peak since reset_peak_memory (Linux), else since it started
    # (ru_maxrss is KiB on Linux)
    peak = _resident_peak_kib()
    return (peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _save_checkpoint(ckpt_dir: Path, state: dict[str, Any]) -> None:
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_dir / (CHECKPOINT_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, ckpt_dir / CHECKPOINT_FILE)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint; weights_only=True so that loading one can never run code."""
    f = path / CHECKPOINT_FILE if path.is_dir() else path
    if not f.exists():
        raise FileNotFoundError(f"no checkpoint at {f}")

    def damaged(why: str) -> ValueError:
        return ValueError(
            f"{f}: not a readable training checkpoint ({why}); the run cannot continue from it: "
            "start it again (glintru train --overwrite)"
        )

    try:
        ckpt = torch.load(f, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:  # damaged, truncated, another file
        raise damaged(type(e).__name__) from None
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt] if isinstance(ckpt, dict) else list(CHECKPOINT_KEYS)
    if missing:
        raise damaged(f"no {missing[0]!r}")
    return ckpt


@torch.no_grad()
def measure_inference_ms(
    model: SequentialRecommender, ds: PreparedDataset, max_length: int, device: torch.device, repeats: int = 5
) -> float:
    """Median ms to score all items for one batch of (up to) 2048 test users."""
    users = np.arange(min(INFER_BATCH, ds.n_users))
    batch = split_inputs(ds, "test", max_length, users).to(device)
    was_training = model.training
    model.eval()
    times = []
    for i in range(repeats + 1):
        synchronize(device)
        t0 = time.perf_counter()
        model.scores(batch.item_seq, batch.lengths)
        synchronize(device)
        if i:  # the first call warms up kernels and allocator
            times.append((time.perf_counter() - t0) * 1000)
    model.train(was_training)
    return statistics.median(times)


def use_one_pass(model: SequentialRecommender, cfg: TrainConfig) -> bool:
    """Whether to train one-pass: cfg.one_pass, with None meaning "where it is exact"."""
    if cfg.one_pass is None:
        return model.one_pass_support() is None
    if cfg.one_pass:
        model.require_one_pass()  # never silently approximated
    return bool(cfg.one_pass)


def build_train_loader(
    ds: PreparedDataset,
    model: SequentialRecommender,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    rank: int = 0,
    world_size: int = 1,
) -> SequenceLoader | BatchLoader:
    """The epoch's batches for this rank: one-pass rows where enabled, else per-prefix batches."""
    if use_one_pass(model, cfg):
        return SequenceLoader(ds, model_cfg.max_length, cfg.batch_size, seed=cfg.seed, rank=rank, world_size=world_size)
    return BatchLoader(
        ds,
        model_cfg.max_length,
        cfg.batch_size,
        seed=cfg.seed,
        rank=rank,
        world_size=world_size,
        bucketing=cfg.bucketing,
    )


def pipeline_name(loader: SequenceLoader | BatchLoader) -> str:
    if isinstance(loader, SequenceLoader):
        return "one-pass"
    return "bucketed" if getattr(loader, "bucketing", False) else "random"


class LossModule(torch.nn.Module):
    """The training loss as a module's forward (DDP's gradient hooks fire only through it):
    2-d targets are one-pass rows (a loss at every target position), 1-d ones per-prefix samples.
    The mean is over targets either way."""

    def __init__(self, model: SequentialRecommender):
        super().__init__()
        self.model = model

    def forward(self, item_seq: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.dim() == 2:
            return self.model.sequence_loss(item_seq, lengths, targets)
        return self.model.loss(item_seq, lengths, targets)


def autocast_context(cfg: TrainConfig, device: torch.device):
    return (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if cfg.bf16 and device.type == "cuda"
        else torch.autocast("cpu", enabled=False)
    )


def train_step(
    net: torch.nn.Module,
    batch: Batch | SequenceBatch,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    device: torch.device,
) -> torch.Tensor:
    """One optimiser step on a batch already on `device`: the loss under the run's autocast,
    backward, the gradient clip, the step. The loss comes back detached and on the device (reading
    it would wait for the device). `benchmarks/efficiency.py` times this function."""
    with autocast_context(cfg, device):
        loss = net(batch.item_seq, batch.lengths, batch.targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    optimizer.step()
    return loss.detach()


def _check_finite(losses: list[torch.Tensor], first_step: int, epoch: int, cfg: TrainConfig) -> None:
    """FloatingPointError naming the first of these steps (`first_step` onwards) whose loss is not
    finite: one wait for the device, however many steps the losses cover."""
    stacked = torch.stack(losses)
    bad = ~torch.isfinite(stacked)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise FloatingPointError(
            f"training loss became {stacked[i].item()} at epoch {epoch}, step {first_step + i} "
            f"(lr={cfg.lr}); lower the learning rate or check the data"
        )


def train_epoch(
    net: torch.nn.Module,
    loader: SequenceLoader | BatchLoader,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    device: torch.device,
    epoch: int,
    *,
    bar=None,
) -> EpochStats:
    """One epoch of optimiser steps. `net` is a model (wrapped in a LossModule here), a
    LossModule, or a DDP-wrapped LossModule. The caller sets train mode.

    The loss is summed on the device and checked for NaN every NAN_CHECK_STEPS steps and at the
    epoch's end, since reading it to the host each step would stall a GPU; the steps after a
    non-finite loss until its check are wasted work, never a checkpoint."""
    if isinstance(net, SequentialRecommender):
        net = LossModule(net)
    loader.set_epoch(epoch)
    t0 = time.perf_counter()
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    unchecked: list[torch.Tensor] = []  # losses of the steps since the last check
    n_seen, steps, width = 0, 0, 0
    for step, batch in enumerate(loader):
        n = len(batch)  # targets (rows' target positions, or per-prefix samples), counted on the host
        batch = batch.to(device, non_blocking=True)
        unchecked.append(train_step(net, batch, optimizer, cfg, device))
        total_loss += unchecked[-1].double() * n
        n_seen += n
        steps += 1
        width += batch.item_seq.size(1)
        if len(unchecked) == NAN_CHECK_STEPS:
            _check_finite(unchecked, step + 1 - len(unchecked), epoch, cfg)
            unchecked = []
            if bar is not None:
                bar.set_postfix(
                    loss=f"{total_loss.item() / n_seen:.4f}", samples_s=f"{n_seen / (time.perf_counter() - t0):.0f}"
                )
        if bar is not None:
            bar.update(1)
    if unchecked:
        _check_finite(unchecked, steps - len(unchecked), epoch, cfg)
    synchronize(device)
    return EpochStats(
        train_loss=total_loss.item() / max(n_seen, 1),
        seconds=time.perf_counter() - t0,
        steps=steps,
        targets=n_seen,
        mean_padded_width=width / max(steps, 1),
    )


# -- one run: its state, set-up, epochs and end -----------------------------------------------------


@dataclass
class TrainState:
    """Where a run stands after an epoch: what a resumed run needs besides the model's and the
    optimizer's own state. The fields are the checkpoint's keys, so a new field is saved and
    restored with the others."""

    epoch: int = 0  # the last finished epoch
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best one
    best_valid: dict[str, float] = field(default_factory=dict)
    best_model: dict[str, torch.Tensor] | None = None  # the best epoch's weights, on the CPU
    history: list[dict[str, Any]] = field(default_factory=list)

    def stopped(self, cfg: TrainConfig) -> bool:
        return self.epoch >= cfg.epochs or self.bad_epochs >= cfg.patience

    def record(self, entry: dict[str, Any], model: torch.nn.Module, select_metric: str) -> None:
        """Count in one validated epoch (its history entry); a new best by `select_metric` keeps the
        model's weights."""
        self.epoch = entry["epoch"]
        self.history.append(entry)
        valid = entry["valid"]
        if not self.best_valid or valid[select_metric] > self.best_valid[select_metric]:
            self.best_epoch, self.best_valid, self.bad_epochs = self.epoch, valid, 0
            self.best_model = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            self.bad_epochs += 1

    def to_checkpoint(
        self, model_name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer
    ) -> dict[str, Any]:
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        # dropout on a GPU draws from CUDA's generators: without them a resumed run draws other masks
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
        return {
            "model_name": model_name,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": cuda_rng,
            **own,
        }

    @classmethod
    def from_checkpoint(
        cls,
        ckpt: dict[str, Any],
        model_name: str,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        source: Path,
    ) -> TrainState:
        """The state `ckpt` holds; its weights, optimizer state and RNG state are loaded as well."""
        if ckpt["model_name"] != model_name:
            raise ValueError(f"checkpoint at {source} is for {ckpt['model_name']}, not {model_name}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["torch_rng"])
        if ckpt.get("cuda_rng") and torch.cuda.is_available():
            # applied when CUDA starts; a machine with fewer GPUs restores those it has
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"][: torch.cuda.device_count()])
        return cls(**{f.name: ckpt[f.name] for f in dataclasses.fields(cls) if f.name in ckpt})


@dataclass
class _Run:
    """What one run's steps share: its inputs, resolved configs and built pieces."""

    model_name: str
    ds: PreparedDataset
    model_cfg: ModelConfig
    cfg: TrainConfig
    device: torch.device
    out: Path
    rank: int
    world_size: int
    model: SequentialRecommender
    optimizer: torch.optim.Optimizer
    loader: SequenceLoader | BatchLoader
    net: torch.nn.Module  # the loss as a module, DDP-wrapped with world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def pipeline(self) -> str:
        return pipeline_name(self.loader)

    def evaluate(self, split: str) -> EvalResult:
        """The model on `split` ("valid" or "test") under the run's protocol."""
        cfg = self.cfg
        return evaluate(
            self.model,
            self.ds,
            split,
            mode=cfg.eval_mode,
            ks=cfg.ks,
            batch_size=cfg.eval_batch_size,
            device=self.device,
            seed=cfg.seed,
        )


def _run_device(cfg: TrainConfig, world_size: int) -> torch.device:
    device = resolve_device(cfg.device)
    if device.type == "cuda" and device.index is None and world_size > 1:
        device = torch.device("cuda", torch.cuda.current_device())  # the GPU Ray Train gave this worker
    return device


def _setup(
    ds: PreparedDataset,
    model_name: str,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    device: torch.device,
    out: Path,
    rank: int,
    world_size: int,
    resume_from: Path | None,
) -> tuple[_Run, TrainState]:
    """Model, optimizer and batches, seeded, and the state (from a checkpoint if one is there);
    nothing is written, so a refusal here (e.g. one_pass=True where it is not exact) leaves no trace."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    features = ds.item_features() if ds.feature_names else None
    model = build_model(model_name, ds.n_items, model_cfg, item_features=features).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader = build_train_loader(ds, model, model_cfg, cfg, rank, world_size)

    state = TrainState()
    source = resume_from or out / "checkpoint"
    if (source / CHECKPOINT_FILE).exists() or (resume_from is not None and source.is_file()):
        state = TrainState.from_checkpoint(load_checkpoint(source), model_name, model, optimizer, source)

    # DDP's gradient hooks fire only through the wrapper's forward, so the loss is that forward;
    # wrapped after the restore, as DDP broadcasts rank 0's weights when it is built.
    net: torch.nn.Module = LossModule(model)
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    reset_peak_memory(device)
    run = _Run(model_name, ds, model_cfg, cfg, device, out, rank, world_size, model, optimizer, loader, net)
    return run, state


def _write_config(run: _Run, preset: str | None) -> None:
    run.out.mkdir(parents=True, exist_ok=True)
    mark(run.out, RUN)  # what lets a later `glintru train --overwrite` replace this directory
    _write_json(
        run.out / "config.json",
        {
            "model": run.model_name,
            "preset": preset,
            "model_config": run.model_cfg.to_dict(),
            "train_config": dataclasses.asdict(run.cfg),
            "dataset": {
                "path": str(run.ds.path) if run.ds.path else None,
                "name": run.ds.name,
                "stats": run.ds.meta.get("stats", {}),
                "fingerprint": run.ds.fingerprint,
            },
            "world_size": run.world_size,
            "pipeline": run.pipeline,
        },
    )


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def _check_weights_finite(model: torch.nn.Module, epoch: int, cfg: TrainConfig) -> None:
    """Finite losses can still leave infinite weights (an overflowing step); validating and
    checkpointing them would make the last good checkpoint a bad one."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise FloatingPointError(
            f"the weights became non-finite in epoch {epoch} (lr={cfg.lr}); lower the learning rate or check the data"
        )


def _log_epoch(
    epoch: int, stats: EpochStats, valid: dict[str, float], state: TrainState, metric: str, progress: bool
) -> None:
    # INFO is what the CLI shows; a caller that asked for no progress can still see it at DEBUG
    log.log(
        logging.INFO if progress else logging.DEBUG,
        "epoch %3d  loss %.4f  valid %s %.4f  best %.4f (epoch %d)  %.1fs",
        epoch,
        stats.train_loss,
        metric,
        valid[metric],
        state.best_valid[metric],
        state.best_epoch,
        stats.seconds,
    )


def _epoch(run: _Run, state: TrainState, reporter: Callable[[EpochReport], None] | None, progress: bool) -> None:
    """One epoch: train, validate, keep the best weights, checkpoint (rank 0), log and report."""
    epoch = state.epoch + 1
    run.model.train()
    bar = _progress(len(run.loader), f"{run.model_name} epoch {epoch}", progress and run.is_main)
    try:
        stats = train_epoch(run.net, run.loader, run.optimizer, run.cfg, run.device, epoch, bar=bar)
    finally:
        if bar is not None:
            bar.close()
    cfg = run.cfg
    _check_weights_finite(run.model, epoch, cfg)
    valid = run.evaluate("valid").metrics
    state.record(
        {
            "epoch": epoch,
            "train_loss": stats.train_loss,
            "valid": valid,
            "seconds": stats.seconds,
            "samples_per_second": stats.targets * run.world_size / stats.seconds,
            "pipeline": run.pipeline,
            "steps": stats.steps,
            "mean_padded_width": stats.mean_padded_width,
        },
        run.model,
        cfg.select_metric,
    )
    ckpt_dir = None
    if run.is_main:
        ckpt_dir = run.out / "checkpoint"
        _save_checkpoint(ckpt_dir, state.to_checkpoint(run.model_name, run.model, run.optimizer))
        _log_epoch(epoch, stats, valid, state, cfg.select_metric, progress)
    if reporter is not None:
        final = state.stopped(cfg)
        reporter(
            EpochReport(
                epoch, stats.train_loss, valid, state.best_epoch, state.best_valid, stats.seconds, ckpt_dir, final
            )
        )


def _metrics(run: _Run, state: TrainState, test: dict[str, float]) -> dict[str, Any]:
    """metrics.json: the best epoch's validation and the test metrics, timings, sizes, history."""
    history = state.history
    widths = [h["mean_padded_width"] for h in history if "mean_padded_width" in h]  # older checkpoints lack it
    return {
        "valid": state.best_valid,
        "test": test,
        "best_epoch": state.best_epoch,
        "epochs": len(history),
        "stopped_early": len(history) < run.cfg.epochs,
        # what the numbers rest on besides the model: the data, the split and the protocol
        "dataset_fingerprint": run.ds.fingerprint,
        **protocol(run.cfg.eval_mode, run.cfg.seed),
        "seconds_per_epoch": statistics.median(h["seconds"] for h in history),
        "samples_per_second": statistics.median(h["samples_per_second"] for h in history),
        "pipeline": run.pipeline,
        "mean_padded_width": statistics.mean(widths) if widths else None,
        "infer_ms_per_batch": measure_inference_ms(run.model, run.ds, run.model_cfg.max_length, run.device),
        "peak_memory_mb": peak_memory_mb(run.device),
        "num_parameters": sum(p.numel() for p in run.model.parameters()),
        "history": history,
    }


def _finish(run: _Run, state: TrainState) -> RunResult:
    """The best weights back in the model; on rank 0 the test split evaluated, once, and the run's
    files written, metrics.json last (its presence marks a finished run)."""
    if state.best_model is None:
        raise RuntimeError("training finished without a single validated epoch")
    run.model.load_state_dict(state.best_model)
    if not run.is_main:
        return RunResult(out_dir=run.out, model=run.model)
    test = run.evaluate("test")
    write_per_user(test.per_user, run.out / "test_users.parquet")
    metrics = _metrics(run, state, test.metrics)
    torch.save(state.best_model, run.out / "model.pt")
    _write_json(run.out / "env.json", environment(run.device))
    _write_json(run.out / "metrics.json", metrics)
    return RunResult(out_dir=run.out, metrics=metrics, model=run.model)


def train(
    data: PreparedDataset | str | os.PathLike,
    model_name: str,
    out_dir: str | os.PathLike,
    *,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    rank: int = 0,
    world_size: int = 1,
    reporter: Callable[[EpochReport], None] | None = None,
    resume_from: str | os.PathLike | None = None,
    progress: bool = True,
) -> RunResult:
    """Train `model_name` on `data`, write the run directory, return its metrics.

    1. Check every setting (keys, types, values, the device) before any work.
    2. Load the data; build the model, optimizer and batches; restore the state from a checkpoint
       (`resume_from`, else `out_dir/checkpoint` when one is there).
    3. Write config.json; then per epoch train, validate, keep the best weights, checkpoint and
       report, until `epochs` or `patience` epochs without a better validation `select_metric`.
    4. Load the best weights, evaluate the test split once, write the per-user test metrics,
       model.pt, env.json and metrics.json.

    `overrides` may hold model fields and TrainConfig fields (the CLI's --set pairs); TrainConfig
    fields there override `config`. With world_size > 1 the process group must be initialised
    (Ray Train does this) and the model is wrapped in DistributedDataParallel; only rank 0 writes.
    `progress`: a progress bar and the per-epoch line at INFO on the "glintru" logger (else DEBUG).
    """
    model_cfg, cfg = resolve_configs(model_name, preset, overrides, config)
    device = _run_device(cfg, world_size)
    ds = data if isinstance(data, PreparedDataset) else load_dataset(data)
    check_mode_fits(cfg.eval_mode, ds.n_items)
    run, state = _setup(
        ds,
        model_name,
        model_cfg,
        cfg,
        device,
        Path(out_dir),
        rank,
        world_size,
        Path(resume_from) if resume_from else None,
    )
    if run.is_main:
        _write_config(run, preset)
        (run.out / FAILED_FILE).unlink(missing_ok=True)  # an earlier try's; this one starts afresh
    _run_epochs(run, state, reporter, progress)
    return _finish(run, state)


def _run_epochs(run: _Run, state: TrainState, reporter: Callable[[EpochReport], None] | None, progress: bool) -> None:
    """Epochs until the run stops; a non-finite loss or weights leave FAILED_FILE beside the last
    finished epoch's checkpoint, which a resume continues once the cause is fixed."""
    try:
        while not state.stopped(run.cfg):
            _epoch(run, state, reporter, progress)
    except FloatingPointError as e:
        if run.is_main:
            _write_json(
                run.out / FAILED_FILE, {"error": str(e), "epoch": state.epoch + 1, "checkpoint_epoch": state.epoch}
            )
        raise
