"""The paper's Table 3 for every model, with the training pipelines side by side and where a step's time goes.

    python benchmarks/efficiency.py --like beauty            # Beauty-shaped synthetic log, d=64, L=100
    python benchmarks/efficiency.py --like ml-1m             # ML-1M-shaped, d=128, L=200
    python benchmarks/efficiency.py --data DIR [--models glintru,sasrec] [--hidden-size 64] [--max-length 100]
                                    [--compile] [--bf16] [--threads 1] [--name efficiency-beauty]

For each model, in a fresh child process (so that peak memory is the model's own); each timed training
step is the training loop's own (glintru.train.train_step, its autocast included):
- inference ms per batch of 2,048 users (median of --repeats);
- training s/epoch for every pipeline in MODES, in the same run: fixed-length padding (every batch
  padded to L), random batches with dynamic padding (the old default), length-bucketed batches (the
  default). Unless --full-epoch, --train-batches batches spread over the epoch's range of batch widths
  are timed (median of --repeats each, the pipelines round robin so that a shared machine's load hits
  them alike) and the epoch is estimated by interpolating step time over the width of every batch of
  the epoch: step cost follows the padded width, which bucketing makes vary;
- peak memory (GPU memory per pipeline on CUDA; on a CPU the child's peak resident set, all pipelines);
- a breakdown of one training step: embedding + encoder (forward and backward), output layer +
  cross-entropy over all items (forward and backward), optimiser step, at the full width L and at the
  bucketed epoch's median width;
- with --compile, the bucketed pipeline and inference again under torch.compile (dynamic shapes).
An optional --sweep times one step per model at each sequence length and fits the growth exponent.
Writes OUT/NAME.json and OUT/NAME.md (default benchmarks/results/efficiency.*).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import glintru  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from glintru.models import DATASET_PRESETS, MODELS
from glintru.train import (
    LossModule,
    TrainConfig,
    autocast_context,
    peak_memory_mb,
    reset_peak_memory,
    synchronize,
    train_step,
)

ALL_MODELS = tuple(MODELS)  # the registry: a newly registered model is benchmarked too
RESULTS = Path(__file__).resolve().parent / "results"

# The shapes take the width and history length of the paper's presets (Table 5, glintru.models.presets;
# batch 2,048 everywhere). Explicit flags override them.
SHAPE_SETTINGS = {
    name: {key: preset[key] for key in ("hidden_size", "max_length")} for name, preset in DATASET_PRESETS.items()
}
DEFAULTS = {"hidden_size": 64, "max_length": 50, "batch_size": 2048}


@dataclass(frozen=True)
class Mode:
    """One training pipeline: how an epoch is cut into batches.

    Adding a pipeline is one entry in MODES: planning, timing and the tables read these fields and
    never a pipeline's name. Every pipeline trains with the loop's own step (glintru.train.train_step)."""

    label: str
    loader_options: Callable[[int], dict[str, Any]]  # max_length -> BatchLoader keyword arguments
    one_pass: bool = False  # batches from glintru.data.sequences.SequenceLoader, every step timed
    headline: bool = False  # the table quotes its speedups over BASELINE and FIXED

    def plan(self, ds, a, dev: torch.device) -> dict[str, Any]:
        """The epoch's batches, those timed, and how their step times make an epoch's seconds."""
        if self.one_pass:  # offered only where the model makes it exact (measure_one)
            return _one_pass_plan(ds, a, dev)
        return _batch_plan(ds, a, dev, self.loader_options(a.max_length))


MODES: dict[str, Mode] = {
    "fixed": Mode("fixed-length padding", lambda L: {"bucketing": False, "pad_to": L}),
    "random": Mode("random batches, dynamic padding", lambda L: {"bucketing": False}),
    "bucketed": Mode("length-bucketed batches", lambda L: {"bucketing": True}, headline=True),
    "one-pass": Mode("one pass per history", lambda L: {}, one_pass=True, headline=True),
}
BASELINE = "random"  # speedups are quoted against random batches, the default before bucketing and one-pass...
FIXED = "fixed"  # ...and against fixed-length padding


def loop_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig, device: torch.device):
    """The training loop's own step bound to a loss module: `step(batch)` on a device batch."""
    return functools.partial(train_step, net, optimizer=optimizer, cfg=cfg, device=device)


def _build(name: str, ds, hidden: int, max_length: int, device: torch.device):
    from glintru.models import build_model, resolve_config

    cfg = resolve_config(name, None, {"hidden_size": hidden, "max_length": max_length, "dropout": 0.2})
    feats = ds.item_features() if ds.feature_names else None
    return build_model(name, ds.n_items, cfg, item_features=feats).to(device)


def _time(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class _EncoderLoss(torch.nn.Module):
    """The per-prefix training loss through `encoder` (a compiled model): `model.loss` would reach the
    uncompiled forward through the compiled wrapper's attribute lookup."""

    def __init__(self, encoder: torch.nn.Module, model: torch.nn.Module):
        super().__init__()
        self.encoder, self.model = encoder, model

    def forward(self, item_seq: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return _output_ce(self.encoder(item_seq, lengths), self.model.item_embeddings(), targets)


def _output_ce(rep: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The models' training loss from a representation (the same fused path `model.loss` takes)."""
    from glintru.models.base import item_cross_entropy

    return item_cross_entropy(rep, items, targets)


def sample_batches(widths: np.ndarray, sizes: np.ndarray, k: int) -> np.ndarray:
    """Indices of up to k batches of distinct widths spread evenly over the sorted widths (always the
    narrowest and widest), so that interpolation covers the epoch's whole range; the largest batch
    of each chosen width. Pipelines whose batches all share one width need a single timed batch."""
    order = np.argsort(widths, kind="stable")
    quantile_widths = np.unique(widths[order[np.rint(np.linspace(0, widths.size - 1, k)).astype(int)]])
    return np.array([max(np.flatnonzero(widths == w), key=lambda i: sizes[i]) for w in quantile_widths])


def estimate_epoch(
    widths: np.ndarray, sizes: np.ndarray, timed_widths: np.ndarray, timed_s: np.ndarray, batch_size: int
) -> float:
    """Epoch seconds from timed steps: step time interpolated in the padded width (averaged where
    several timed batches share a width), scaled by each batch's share of a full batch."""
    uw = np.unique(timed_widths)
    ut = np.array([timed_s[timed_widths == w].mean() for w in uw])
    per_batch = np.interp(widths, uw, ut)
    return float((per_batch * np.minimum(sizes / batch_size, 1.0)).sum())


def time_modes(mode_keys: list[str], ds, a, dev: torch.device, step: Callable[[Any], Any]) -> dict[str, dict]:
    """Training s/epoch of each pipeline, `step(batch)` (loop_step) timed on its batches. Estimated
    epochs time the pipelines' sampled batches round robin (every pipeline once per repeat), so that
    load from other jobs on a shared machine falls on all pipelines alike instead of on whichever
    ran during it."""
    plans = {key: MODES[key].plan(ds, a, dev) for key in mode_keys}
    for pl in plans.values():
        if dev.type == "cuda":  # GPU memory per pipeline; a CPU's resident peak stays the child's own
            reset_peak_memory(dev)
        if pl["timed_batches"] is None:  # one pass over the real epoch, loader included
            loader = pl["loader"]
            step(next(iter(loader)).to(dev))  # warm-up
            synchronize(dev)
            t0 = time.perf_counter()
            for b in loader:
                step(b.to(dev))
            synchronize(dev)
            pl["epoch_s"] = time.perf_counter() - t0
        else:
            pl["batches"] = pl["timed_batches"]()
            for b in pl["batches"]:
                step(b)  # warm-up, and this pipeline's peak memory
            synchronize(dev)
            pl["timed"] = [[] for _ in pl["batches"]]
        pl["peak_memory_mb"] = peak_memory_mb(dev)

    timed_plans = [pl for pl in plans.values() if pl["timed_batches"] is not None]
    for _ in range(a.repeats):
        for pl in timed_plans:
            for times, b in zip(pl["timed"], pl["batches"]):
                synchronize(dev)
                t0 = time.perf_counter()
                step(b)
                synchronize(dev)
                times.append(time.perf_counter() - t0)
    for pl in timed_plans:
        pl["timed"] = [statistics.median(t) for t in pl["timed"]]
        pl["epoch_s"] = pl["estimate"](np.array(pl["timed"]))

    rows = {}
    for key, pl in plans.items():
        w, sz, timed = pl["widths"], pl["sizes"], pl.get("timed")
        rows[key] = {
            "mode": key,
            "label": MODES[key].label,
            "train_s_per_epoch": pl["epoch_s"],
            "batches_per_epoch": int(len(pl["indices"])),
            "mean_padded_width": float(w.mean()),
            "median_padded_width": float(np.median(w)),
            "samples": int(sz.sum()),
            "timed_batches": None
            if timed is None
            else [{"width": int(w[i]), "size": int(sz[i]), "step_s": t} for i, t in zip(pl["chosen"], timed)],
            "peak_memory_mb": pl["peak_memory_mb"],
        }
    return rows


def _batch_plan(ds, a, dev: torch.device, options: dict[str, Any]) -> dict[str, Any]:
    """A per-prefix epoch (BatchLoader with `options`): whole (--full-epoch) or sampled batches of
    distinct widths, gathered onto the device when the pipeline's turn comes, the epoch estimated
    by interpolating their step times over the width of every batch."""
    from glintru.data.batches import BatchLoader, gather

    loader = BatchLoader(ds, a.max_length, a.batch_size, seed=0, **options)
    indices = loader.batch_indices()
    widths = loader.padded_widths()
    sizes = np.array([len(i) for i in indices])
    chosen = np.arange(len(indices)) if a.full_epoch else sample_batches(widths, sizes, a.train_batches)

    def timed_batches() -> list:
        return [
            gather(ds, loader.users[indices[i]], loader.positions[indices[i]], a.max_length, loader.pad_to).to(dev)
            for i in chosen
        ]

    return {
        "loader": loader,
        "indices": indices,
        "widths": widths,
        "sizes": sizes,
        "chosen": chosen,
        "timed_batches": None if a.full_epoch else timed_batches,
        "estimate": lambda timed: estimate_epoch(widths, sizes, widths[chosen], timed, a.batch_size),
    }


def _one_pass_plan(ds, a, dev: torch.device) -> dict[str, Any]:
    """The one-pass epoch's batches (whole histories; sliding-window samples past max_length), the
    timed ones moved to the device up front; an epoch has about as many steps as per-prefix ones."""
    from glintru.data.sequences import SequenceLoader

    loader = SequenceLoader(ds, a.max_length, a.batch_size, seed=0)
    loader.set_epoch(0)
    batches = list(loader)
    n = len(batches)
    # Short epochs are timed whole. Long ones (ML-1M: hundreds of steps) time `k` steps spread
    # evenly over the epoch's shuffled order and scale their mean by the step count.
    k = n if getattr(a, "full_epoch", False) else min(n, max(16, 4 * getattr(a, "train_batches", 4)))
    chosen = np.unique(np.rint(np.linspace(0, n - 1, k)).astype(int))
    sizes = np.array([b.num_targets if hasattr(b, "num_targets") else len(b) for b in batches])
    timed = [batches[i].to(dev) for i in chosen]
    return {
        "loader": loader,
        "batches": timed,
        "timed_batches": lambda: timed,
        "estimate": lambda step_s: float(np.mean(step_s) * n),  # the mean timed step times the step count
        "indices": batches,
        "widths": np.array([b.item_seq.shape[1] for b in batches]),
        "sizes": sizes,
        "chosen": chosen,
    }


def step_breakdown(
    model, opt, step: Callable[[Any], Any], b, dev: torch.device, repeats: int, cfg: TrainConfig
) -> dict:
    """Seconds of one training step's parts on batch b, each timed on its own (median of repeats);
    the whole step is `step` (loop_step over `model` and `opt`), the parts under its autocast."""
    items = model.item_embeddings

    def encoder():
        with autocast_context(cfg, dev):
            rep = model(b.item_seq, b.lengths)
        rep.float().sum().backward()

    with torch.no_grad(), autocast_context(cfg, dev):
        rep0 = model(b.item_seq, b.lengths).detach()

    def output():
        rep = rep0.clone().requires_grad_(True)
        with autocast_context(cfg, dev):
            loss = _output_ce(rep, items(), b.targets)
        loss.backward()

    def optimiser():
        opt.step()

    def full():
        step(b)

    out = {"width": int(b.item_seq.shape[1]), "batch": len(b)}
    full()  # every parameter has a gradient, so the optimiser step below does its real work
    for key, fn in (("encoder_s", encoder), ("output_ce_s", output), ("optimiser_s", optimiser), ("step_s", full)):
        out[key] = _time(fn, dev, repeats)
    opt.zero_grad(set_to_none=True)
    return out


def measure_one(name: str, a) -> dict:
    from glintru.data.batches import BatchLoader, gather, split_inputs
    from glintru.data.dataset import load_dataset
    from glintru.train import resolve_device

    dev = resolve_device(a.device)
    torch.manual_seed(0)
    ds = load_dataset(a.data)
    model = _build(name, ds, a.hidden_size, a.max_length, dev)
    users = np.arange(min(2048, ds.n_users))
    batch = split_inputs(ds, "test", a.max_length, users).to(dev)
    cfg = TrainConfig(bf16=a.bf16)  # what the loop's step reads: its autocast (bf16 on CUDA only), no clip

    def infer(encode):
        model.eval()
        with torch.no_grad(), autocast_context(cfg, dev):
            return _time(lambda: encode(batch.item_seq, batch.lengths) @ model.item_embeddings().t(), dev, a.repeats)

    result: dict[str, Any] = {
        "model": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "infer_batch_users": int(len(users)),
    }
    if dev.type == "cuda":
        reset_peak_memory(dev)
    result["infer_ms_per_batch"] = infer(model) * 1000
    result["infer_peak_memory_mb"] = peak_memory_mb(dev)

    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = loop_step(LossModule(model), opt, cfg, dev)

    # one-pass is offered only where it is exact for the model; elsewhere its cell says why not
    refused = model.one_pass_support()
    modes = [m for m in a.modes if not (MODES[m].one_pass and refused)]
    if refused and len(modes) < len(a.modes):
        result["one_pass_refused"] = refused
    result["modes"] = time_modes(modes, ds, a, dev, step)
    model.train()
    for k, row in result["modes"].items():
        for ref in (BASELINE, FIXED):
            if ref in result["modes"] and k != ref:
                row[f"speedup_vs_{ref}"] = result["modes"][ref]["train_s_per_epoch"] / row["train_s_per_epoch"]

    # step breakdown at full width and at the bucketed epoch's median width
    loader = BatchLoader(ds, a.max_length, a.batch_size, seed=0)
    indices, widths = loader.batch_indices(), loader.padded_widths()
    full_sizes = [i for i, s in enumerate(indices) if len(s) == max(len(x) for x in indices)]
    pick = {
        "at_full_width": None,
        "at_median_bucketed_width": min(full_sizes, key=lambda i: abs(widths[i] - np.median(widths))),
    }
    result["breakdown"] = {}
    for key, i in pick.items():
        sel = indices[i] if i is not None else indices[full_sizes[0]]
        b = gather(ds, loader.users[sel], loader.positions[sel], a.max_length, a.max_length if i is None else None).to(
            dev
        )
        result["breakdown"][key] = step_breakdown(model, opt, step, b, dev, a.repeats, cfg)

    if a.compile:
        # compile the encoder (the module's forward); the loss calls it instead of model.loss,
        # which would reach the uncompiled forward through the wrapper's attribute lookup
        compiled = torch.compile(model, dynamic=True)
        model.train()
        t0 = time.perf_counter()
        net = _EncoderLoss(compiled, model)
        row = time_modes(["bucketed"], ds, a, dev, loop_step(net, opt, cfg, dev))["bucketed"]
        row["wall_s_including_compilation"] = time.perf_counter() - t0
        row["mode"], row["label"] = "bucketed+compile", "length-bucketed, torch.compile"
        if "bucketed" in result["modes"]:
            row["speedup_vs_bucketed"] = result["modes"]["bucketed"]["train_s_per_epoch"] / row["train_s_per_epoch"]
        result["compiled"] = row
        result["compiled"]["infer_ms_per_batch"] = infer(compiled) * 1000
        model.train()
    result["peak_memory_mb"] = peak_memory_mb(dev)
    if a.sweep:
        result.update(length_sweep(name, ds, a, dev, cfg))
    return result


def length_sweep(name: str, ds, a, dev: torch.device, cfg: TrainConfig) -> dict:
    """One inference batch and one training step (the loop's) per length on random full-length histories."""
    from glintru.data.batches import Batch

    rows = []
    for L in a.sweep:
        m = _build(name, ds, a.hidden_size, L, dev)
        g = torch.Generator().manual_seed(L)
        B = min(a.batch_size, 256) if dev.type == "cpu" else a.batch_size
        seq = torch.randint(1, ds.n_items + 1, (B, L), generator=g).to(dev)
        lengths = torch.full((B,), L, dtype=torch.long, device=dev)
        targets = torch.randint(1, ds.n_items + 1, (B,), generator=g).to(dev)
        m.eval()
        with torch.no_grad():
            inf = _time(functools.partial(m.scores, seq, lengths), dev, a.repeats)
        m.train()
        o = torch.optim.Adam(m.parameters(), lr=1e-3)
        b = Batch(torch.arange(B, device=dev), seq, lengths, targets)
        tstep = functools.partial(loop_step(LossModule(m), o, cfg, dev), b)  # bound now: timed in this iteration

        rows.append(
            {
                "length": L,
                "batch": B,
                "infer_ms": inf * 1000,
                "train_step_ms": _time(tstep, dev, max(2, a.repeats // 2)) * 1000,
            }
        )
    out: dict[str, Any] = {"sweep": rows}
    if len(rows) >= 2:
        xs = np.log([r["length"] for r in rows])
        k = max(2, len(xs) // 2)  # slope over the longest lengths, where fixed per-call costs fade
        for key in ("infer_ms", "train_step_ms"):
            out[f"sweep_exponent_{key}"] = float(np.polyfit(xs[-k:], np.log([r[key] for r in rows])[-k:], 1)[0])
    return out


def markdown(rows: list[dict], meta: dict) -> str:
    modes = [m for m in meta["modes"]]
    headline = [m for m in modes if MODES[m].headline]
    est = (
        "whole epochs timed"
        if meta["full_epoch"]
        else f"epochs estimated from {meta['train_batches']} timed batches spread over the batch widths, "
        "step time interpolated in the width"
    )
    lines = [
        f"Efficiency on {meta['dataset']} ({meta['n_users']:,} users, {meta['n_items']:,} items, "
        f"{meta['samples']:,} training samples; {meta['device']}, d={meta['hidden_size']}, "
        f"L={meta['max_length']}, batch {meta['batch_size']}, bf16 {'on' if meta['bf16'] else 'off'}, "
        f"torch threads {meta['threads']}; {est}; medians of {meta['repeats']} runs, ratios from this run)",
        "",
        "Training s/epoch by pipeline (mean padded width per batch in brackets)",
        "",
        "| model | "
        + " | ".join(MODES[m].label for m in modes)
        + (" | bucketed + torch.compile" if meta["compile"] else "")
        + "".join(f" | {best} vs {r}" for best in headline for r in (BASELINE, FIXED) if r in modes)
        + f" | inference ms / batch of {rows[0]['infer_batch_users'] if rows else 0} users"
        + " | peak memory MB | params |",
        "|---|"
        + "---:|"
        * (len(modes) + bool(meta["compile"]) + sum(r in modes for r in (BASELINE, FIXED)) * len(headline) + 3),
    ]
    for r in rows:
        cells = [
            f"{r['modes'][m]['train_s_per_epoch']:.2f} ({r['modes'][m]['mean_padded_width']:.1f})"
            if m in r["modes"]
            else "n/a"
            for m in modes
        ]
        if meta["compile"]:
            cells.append(f"{r['compiled']['train_s_per_epoch']:.2f}")
        for best in headline:
            row = r["modes"].get(best, {})
            cells += [
                f"{row[f'speedup_vs_{ref}']:.1f}x" if f"speedup_vs_{ref}" in row else "n/a"
                for ref in (BASELINE, FIXED)
                if ref in modes
            ]
        cells += [f"{r['infer_ms_per_batch']:.1f}", f"{r['peak_memory_mb']:.0f}", f"{r['parameters']:,}"]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    lines += [f"\nn/a for {r['model']}: {r['one_pass_refused']}" for r in rows if r.get("one_pass_refused")]
    lines += [
        "",
        "One training step, ms: embedding + encoder (fwd+bwd) / output layer + cross-entropy "
        "(fwd+bwd) / optimiser / whole step",
        "",
        "| model | at width L | at the bucketed median width |",
        "|---|---|---|",
    ]
    for r in rows:
        parts = []
        for key in ("at_full_width", "at_median_bucketed_width"):
            s = r["breakdown"][key]
            parts.append(
                f"w={s['width']}: {s['encoder_s'] * 1e3:.0f} / {s['output_ce_s'] * 1e3:.0f} / "
                f"{s['optimiser_s'] * 1e3:.0f} / {s['step_s'] * 1e3:.0f}"
            )
        lines.append(f"| {r['model']} | " + " | ".join(parts) + " |")
    if rows and rows[0].get("sweep"):
        lengths = [s["length"] for s in rows[0]["sweep"]]
        lines += [
            "",
            "Training ms per step by sequence length (random full-length histories)",
            "",
            "| model | " + " | ".join(f"L={L}" for L in lengths) + " | growth exp. |",
            "|---|" + "---:|" * (len(lengths) + 1),
        ]
        for r in rows:
            lines.append(
                f"| {r['model']} | "
                + " | ".join(f"{s['train_step_ms']:.1f}" for s in r["sweep"])
                + f" | {r.get('sweep_exponent_train_step_ms', float('nan')):.2f} |"
            )
    return "\n".join(lines) + "\n"


def shaped_dataset(like: str, scale: float, seed: int, cache: Path) -> Path:
    """A --like dataset generated once and reused (generation is deterministic by its arguments)."""
    from glintru.data.synthetic import generate_like

    path = cache / f"{like}-x{scale:g}-seed{seed}"
    if not (path / "meta.json").exists():
        print(f"generating a {like}-shaped log (scale {scale:g}) in {path} ...", file=sys.stderr, flush=True)
        generate_like(path, like, seed=seed, scale=scale, overwrite=True)
    return path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="prepared dataset directory")
    src.add_argument("--like", choices=sorted(SHAPE_SETTINGS), help="generate a log of that dataset's shape")
    p.add_argument("--scale", type=float, default=1.0, help="with --like: shrink the log (0 < S <= 1)")
    p.add_argument("--cache", default=str(RESULTS / "data"), help="where --like datasets are kept")
    p.add_argument("--models", default=",".join(ALL_MODELS))
    p.add_argument("--modes", default=",".join(MODES), help=f"pipelines among {', '.join(MODES)}")
    p.add_argument("--hidden-size", type=int, help="default: the shape's (64 Beauty, 128 ML-1M), else 64")
    p.add_argument("--max-length", type=int, help="default: the shape's (100 Beauty, 200 ML-1M), else 50")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--repeats", type=int, default=3, help="timings per measurement; medians are reported")
    p.add_argument("--train-batches", type=int, default=5, help="batch widths timed per pipeline to estimate an epoch")
    p.add_argument("--full-epoch", action="store_true", help="time whole epochs instead of estimating")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile (bucketed pipeline)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast on CUDA, as training's bf16 (none on a CPU)")
    p.add_argument("--sweep", default="", help="sequence lengths for a growth sweep, e.g. 50,100,200,400")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--name", default="efficiency", help="output file stem")
    p.add_argument("--one", help=argparse.SUPPRESS)  # child mode: measure one model, print JSON
    a = p.parse_args(argv)
    a.sweep = [int(x) for x in a.sweep.split(",") if x.strip()]
    a.modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    unknown = [m for m in a.modes if m not in MODES]
    if unknown:
        p.error(f"unknown mode(s) {', '.join(unknown)}; choose among {', '.join(MODES)}")
    shape = SHAPE_SETTINGS.get(a.like or "", {})
    a.hidden_size = a.hidden_size or shape.get("hidden_size", DEFAULTS["hidden_size"])
    a.max_length = a.max_length or shape.get("max_length", DEFAULTS["max_length"])
    return a


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.one:
        print(json.dumps(measure_one(a.one, a)))
        return 0
    if a.like:
        a.data = str(shaped_dataset(a.like, a.scale, 0, Path(a.cache)))
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    from glintru.models import get_model_class

    for m in models:
        get_model_class(m)  # unknown names fail here, before any timing
    child_args = [x for x in argv]
    if a.like:  # children read the generated directory directly
        child_args += ["--data", a.data]
        i = child_args.index("--like")
        del child_args[i : i + 2]
    child_args += ["--hidden-size", str(a.hidden_size), "--max-length", str(a.max_length)]
    rows = []
    for m in models:
        print(f"measuring {m} ...", file=sys.stderr, flush=True)
        out = subprocess.run(
            [sys.executable, __file__, "--one", m] + child_args, capture_output=True, text=True, env=os.environ.copy()
        )
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            raise SystemExit(f"measuring {m} failed (exit {out.returncode})")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    from glintru.data.batches import train_samples
    from glintru.data.dataset import load_dataset
    from glintru.train import resolve_device

    ds = load_dataset(a.data)
    dev = resolve_device(a.device)
    meta = {
        "dataset": ds.name,
        "data": a.data,
        "like": a.like,
        "scale": a.scale,
        "n_users": ds.n_users,
        "n_items": ds.n_items,
        "samples": int(train_samples(ds)[0].size),
        "device": str(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "hidden_size": a.hidden_size,
        "max_length": a.max_length,
        "batch_size": a.batch_size,
        "bf16": a.bf16,
        "compile": a.compile,
        "threads": torch.get_num_threads(),
        "repeats": a.repeats,
        "train_batches": a.train_batches,
        "full_epoch": a.full_epoch,
        "modes": a.modes,
        "torch": torch.__version__,
    }
    table = markdown(rows, meta)
    print(table)
    outdir = Path(a.out)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / f"{a.name}.json").write_text(json.dumps({"meta": meta, "models": rows}, indent=2) + "\n")
    (outdir / f"{a.name}.md").write_text(table)
    print(f"written: {outdir / (a.name + '.json')}, {outdir / (a.name + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
