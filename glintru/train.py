"""The one training loop: local runs call it directly, Ray Train workers call it with a rank.

Cross-entropy over all items, Adam, validation every epoch, early stopping on validation
NDCG@10, best weights kept, test evaluated once at the end, resumable checkpoints.
An epoch runs one of three pipelines over the same targets: one-pass (each user's history
encoded once, a loss at every target position; models where that is exact), length-bucketed
per-prefix batches, or random per-prefix batches. `build_train_loader` and `train_epoch` are the
epoch-level pieces, also used by the benchmarks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from glintru.data.batches import Batch, BatchLoader, split_inputs
from glintru.data.dataset import PreparedDataset, load_dataset
from glintru.data.sequences import SequenceBatch, SequenceLoader
from glintru.evaluate import evaluate, write_per_user
from glintru.models import build_model, get_model_class, resolve_config
from glintru.models.base import ModelConfig, SequentialRecommender

SELECTION_METRIC = "ndcg@10"
CHECKPOINT_FILE = "checkpoint.pt"
INFER_BATCH = 2048


@dataclass
class TrainConfig:
    epochs: int = 200
    patience: int = 10
    lr: float = 1e-3
    batch_size: int = 2048
    eval_batch_size: int = 2048
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"        # auto | cpu | cuda | cuda:N
    eval_mode: str = "full"     # full | uniN | popN
    bf16: bool = False          # autocast to bfloat16 on CUDA
    ks: tuple[int, ...] = (5, 10, 20)
    num_threads: int | None = None  # torch CPU threads; None keeps torch's default
    grad_clip: float | None = None
    bucketing: bool = True      # per-prefix batches grouped by prefix length (False: random batches)
    # One pass per user history, a loss at every target: None = where the model makes it exact,
    # True = required (an error names why where it is not exact), False = per-prefix batches.
    # Dropout masks are then drawn once per history rather than once per prefix.
    one_pass: bool | None = None

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.lr <= 0 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("lr, batch_size and eval_batch_size must be positive")
        if 10 not in self.ks:
            raise ValueError(f"ks must contain 10 (early stopping uses {SELECTION_METRIC}); got {self.ks}")


@dataclass
class EpochStats:
    """What one training epoch did: mean loss per target, wall time and the work it took."""

    train_loss: float
    seconds: float
    steps: int
    targets: int               # training targets (samples) this rank saw
    mean_padded_width: float   # batch width (padded sequence length) averaged over steps


@dataclass
class EpochReport:
    epoch: int
    train_loss: float
    valid: dict[str, float]
    best_epoch: int
    best_valid: dict[str, float]
    seconds: float
    checkpoint_dir: Path | None


@dataclass
class RunResult:
    out_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)  # empty on ranks other than 0
    model: torch.nn.Module | None = None                    # holding the best weights


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

    env = {
        "glintru": glintru.__version__,
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


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is KiB on Linux: the process's resident peak (CPU runs)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    return torch.load(f, map_location="cpu", weights_only=True)


@torch.no_grad()
def measure_inference_ms(model: torch.nn.Module, ds: PreparedDataset, max_length: int,
                         device: torch.device, repeats: int = 5) -> float:
    """Median ms to score all items for one batch of (up to) 2048 test users."""
    users = np.arange(min(INFER_BATCH, ds.n_users))
    batch = split_inputs(ds, "test", max_length, users).to(device)
    was_training = model.training
    model.eval()
    times = []
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        model.scores(batch.item_seq, batch.lengths)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
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


def build_train_loader(ds: PreparedDataset, model: SequentialRecommender, model_cfg: ModelConfig,
                       cfg: TrainConfig, rank: int = 0, world_size: int = 1) -> SequenceLoader | BatchLoader:
    """The epoch's batches for this rank: one-pass rows where enabled, else per-prefix batches."""
    if use_one_pass(model, cfg):
        return SequenceLoader(ds, model_cfg.max_length, cfg.batch_size, seed=cfg.seed,
                              rank=rank, world_size=world_size)
    return BatchLoader(ds, model_cfg.max_length, cfg.batch_size, seed=cfg.seed, rank=rank,
                       world_size=world_size, bucketing=cfg.bucketing)


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
    return (torch.autocast("cuda", dtype=torch.bfloat16) if cfg.bf16 and device.type == "cuda"
            else torch.autocast("cpu", enabled=False))


def train_epoch(net: torch.nn.Module, loader: SequenceLoader | BatchLoader, optimizer: torch.optim.Optimizer,
                cfg: TrainConfig, device: torch.device, epoch: int, *, bar=None) -> EpochStats:
    """One epoch of optimiser steps. `net` is a model (wrapped in a LossModule here), a
    LossModule, or a DDP-wrapped LossModule. The caller sets train mode."""
    if isinstance(net, SequentialRecommender):
        net = LossModule(net)
    loader.set_epoch(epoch)
    autocast = autocast_context(cfg, device)
    t0 = time.perf_counter()
    total_loss, n_seen, steps, width = 0.0, 0, 0, 0
    for step, batch in enumerate(loader):
        batch = batch.to(device, non_blocking=True)
        with autocast:
            loss = net(batch.item_seq, batch.lengths, batch.targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {loss.item()} at epoch {epoch}, step {step} "
                f"(lr={cfg.lr}); lower the learning rate or check the data")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        optimizer.step()
        n = len(batch)  # targets: rows' target positions, or per-prefix samples
        total_loss += loss.item() * n
        n_seen += n
        steps += 1
        width += batch.item_seq.size(1)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total_loss / n_seen:.4f}",
                            samples_s=f"{n_seen / (time.perf_counter() - t0):.0f}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return EpochStats(train_loss=total_loss / max(n_seen, 1), seconds=time.perf_counter() - t0,
                      steps=steps, targets=n_seen, mean_padded_width=width / max(steps, 1))


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


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

    `overrides` may hold model fields and TrainConfig fields (the CLI's --set pairs); TrainConfig
    fields there override `config`. With world_size > 1 the process group must be initialised
    (Ray Train does this) and the model is wrapped in DistributedDataParallel.
    """
    ds = data if isinstance(data, PreparedDataset) else load_dataset(data)
    model_over, train_over = split_overrides(model_name, dict(overrides or {}))
    cfg = dataclasses.replace(config or TrainConfig(), **train_over)
    if isinstance(cfg.ks, list):
        cfg.ks = tuple(cfg.ks)
    cfg.validate()
    model_cfg = resolve_config(model_name, preset, model_over)
    out = Path(out_dir)
    is_main = rank == 0
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg.device)
    if device.type == "cuda" and device.index is None and world_size > 1:
        device = torch.device("cuda", torch.cuda.current_device())

    seed_everything(cfg.seed)
    features = ds.item_features() if ds.feature_names else None
    model = build_model(model_name, ds.n_items, model_cfg, item_features=features).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader = build_train_loader(ds, model, model_cfg, cfg, rank, world_size)
    pipeline = pipeline_name(loader)

    run_config = {
        "model": model_name,
        "preset": preset,
        "model_config": model_cfg.to_dict(),
        "train_config": dataclasses.asdict(cfg),
        "dataset": {"path": str(ds.path) if ds.path else None, "name": ds.name,
                    "stats": ds.meta.get("stats", {})},
        "world_size": world_size,
        "pipeline": pipeline,
    }
    if is_main:
        _write_json(out / "config.json", run_config)

    # -- state, possibly restored ------------------------------------------------------------
    start_epoch, best_epoch, bad_epochs = 1, 0, 0
    best_valid: dict[str, float] = {}
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = []
    ckpt_source = Path(resume_from) if resume_from else (out / "checkpoint")
    if (ckpt_source / CHECKPOINT_FILE).exists() or (resume_from and ckpt_source.is_file()):
        state = load_checkpoint(ckpt_source)
        if state["model_name"] != model_name:
            raise ValueError(f"checkpoint at {ckpt_source} is for {state['model_name']}, not {model_name}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        best_state = state["best_model"]
        start_epoch = state["epoch"] + 1
        best_epoch, bad_epochs = state["best_epoch"], state["bad_epochs"]
        best_valid, history = state["best_valid"], state["history"]
        torch.set_rng_state(state["torch_rng"])

    # DDP's gradient hooks fire only through the wrapper's forward, so the loss is that forward.
    net: torch.nn.Module = LossModule(model)
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    stopped = bad_epochs >= cfg.patience
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs + 1):
        if stopped:
            break
        model.train()
        loader.set_epoch(epoch)
        bar = _progress(len(loader), f"{model_name} epoch {epoch}", progress and is_main)
        stats = train_epoch(net, loader, optimizer, cfg, device, epoch, bar=bar)
        if bar is not None:
            bar.close()
        seconds = stats.seconds

        valid = evaluate(model, ds, "valid", mode=cfg.eval_mode, ks=cfg.ks,
                         batch_size=cfg.eval_batch_size, device=device, seed=cfg.seed).metrics
        improved = not best_valid or valid[SELECTION_METRIC] > best_valid[SELECTION_METRIC]
        if improved:
            best_epoch, best_valid, bad_epochs = epoch, valid, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        train_loss = stats.train_loss
        history.append({"epoch": epoch, "train_loss": train_loss, "valid": valid, "seconds": seconds,
                        "samples_per_second": stats.targets * world_size / seconds,
                        "pipeline": pipeline, "steps": stats.steps,
                        "mean_padded_width": stats.mean_padded_width})
        ckpt_dir = None
        if is_main:
            ckpt_dir = out / "checkpoint"
            _save_checkpoint(ckpt_dir, {
                "model_name": model_name,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "best_model": best_state,
                "epoch": epoch,
                "best_epoch": best_epoch,
                "bad_epochs": bad_epochs,
                "best_valid": best_valid,
                "history": history,
                "torch_rng": torch.get_rng_state(),
            })
        if progress and is_main:
            print(f"epoch {epoch:3d}  loss {train_loss:.4f}  valid ndcg@10 {valid[SELECTION_METRIC]:.4f}  "
                  f"best {best_valid[SELECTION_METRIC]:.4f} (epoch {best_epoch})  {seconds:.1f}s",
                  file=sys.stderr, flush=True)
        if reporter is not None:
            reporter(EpochReport(epoch, train_loss, valid, best_epoch, best_valid, seconds, ckpt_dir))
        stopped = bad_epochs >= cfg.patience

    # -- final: best weights, test once ------------------------------------------------------
    if best_state is None:
        raise RuntimeError("training finished without a single validated epoch")
    model.load_state_dict(best_state)
    metrics: dict[str, Any] = {}
    if is_main:
        test = evaluate(model, ds, "test", mode=cfg.eval_mode, ks=cfg.ks,
                        batch_size=cfg.eval_batch_size, device=device, seed=cfg.seed)
        write_per_user(test.per_user, out / "test_users.parquet")
        epoch_secs = [h["seconds"] for h in history]
        # A resumed run's history may predate this field.
        widths = [h["mean_padded_width"] for h in history if "mean_padded_width" in h]
        metrics = {
            "valid": best_valid,
            "test": test.metrics,
            "best_epoch": best_epoch,
            "epochs": len(history),
            "stopped_early": len(history) < cfg.epochs,
            "eval_mode": cfg.eval_mode,
            "seconds_per_epoch": statistics.median(epoch_secs),
            "samples_per_second": statistics.median(h["samples_per_second"] for h in history),
            "pipeline": pipeline,
            "mean_padded_width": statistics.mean(widths) if widths else None,
            "infer_ms_per_batch": measure_inference_ms(model, ds, model_cfg.max_length, device),
            "peak_memory_mb": _peak_memory_mb(device),
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "history": history,
        }
        torch.save(best_state, out / "model.pt")
        _write_json(out / "env.json", environment(device))
        _write_json(out / "metrics.json", metrics)
    return RunResult(out_dir=out, metrics=metrics, model=model)
