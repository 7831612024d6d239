"""Is the loader ever the bottleneck? Loader-only samples/s next to model training samples/s.

    python benchmarks/loader.py --data DIR [--model glintru] [--max-length 200] [--batch-size 2048]
                                [--random-batches]

Batches are length-bucketed (the training default) unless --random-batches; both rates are per
sample over the same first batches of an epoch, so the loader-to-model ratio is what training sees.

Prints a table and writes benchmarks/results/loader.json. Medians over --repeats passes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

try:
    import glintru  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from glintru.data.batches import BatchLoader
from glintru.data.dataset import load_dataset
from glintru.models import build_model, resolve_config
from glintru.train import resolve_device


def loader_rate(loader: BatchLoader, max_batches: int) -> float:
    t0, n = time.perf_counter(), 0
    for i, b in enumerate(loader):
        n += len(b)
        if i + 1 >= max_batches:
            break
    return n / (time.perf_counter() - t0)


def model_rate(model, loader: BatchLoader, device, max_batches: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = []
    for i, b in enumerate(loader):  # pre-built so that only the model is timed
        batches.append(b.to(device))
        if i + 1 >= max_batches:
            break
    model.train()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, n = time.perf_counter(), 0
    for b in batches:
        loss = model.loss(b.item_seq, b.lengths, b.targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--model", default="glintru")
    p.add_argument("--max-length", type=int, default=200)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--batches", type=int, default=10, help="batches per timed pass")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--random-batches", action="store_true", help="plain random batches instead of bucketed")
    p.add_argument("--out", default="benchmarks/results/loader.json")
    a = p.parse_args(argv)
    ds = load_dataset(a.data)
    device = resolve_device(a.device)
    loader = BatchLoader(ds, a.max_length, a.batch_size, seed=0, bucketing=not a.random_batches)
    cfg = resolve_config(a.model, None, {"hidden_size": a.hidden_size, "max_length": a.max_length})
    model = build_model(a.model, ds.n_items, cfg, item_features=ds.item_features() if ds.feature_names else None).to(
        device
    )
    loader_runs = [loader_rate(loader, a.batches) for _ in range(a.repeats)]
    model_runs = [model_rate(model, loader, device, a.batches) for _ in range(a.repeats)]
    result = {
        "dataset": ds.name,
        "model": a.model,
        "device": str(device),
        "max_length": a.max_length,
        "batch_size": a.batch_size,
        "hidden_size": a.hidden_size,
        "torch_threads": torch.get_num_threads(),
        "bucketing": not a.random_batches,
        "mean_padded_width": loader.mean_padded_width(),
        "loader_samples_per_s": statistics.median(loader_runs),
        "model_samples_per_s": statistics.median(model_runs),
        "loader_runs": loader_runs,
        "model_runs": model_runs,
    }
    result["loader_to_model_ratio"] = result["loader_samples_per_s"] / result["model_samples_per_s"]
    print(f"{'stage':<28}{'samples/s (median)':>20}")
    print(f"{'loader only':<28}{result['loader_samples_per_s']:>20,.0f}")
    print(f"{a.model + ' train step':<28}{result['model_samples_per_s']:>20,.0f}")
    print(f"loader is {result['loader_to_model_ratio']:.1f}x faster than the model on {device}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
