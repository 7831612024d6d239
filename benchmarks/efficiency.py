"""The paper's Table 3 for every model on one dataset and device, plus a sequence-length sweep.

    python benchmarks/efficiency.py --data DIR [--models glintru,sasrec,...] [--hidden-size 128]
                                    [--max-length 200] [--sweep 50,100,200,400,800] [--device auto]

For each model, in a fresh child process (so that peak memory is the model's own): inference ms
per 2048-user batch (median of --repeats), training seconds per epoch (timed over --train-batches
batches and scaled to the epoch's batch count unless --full-epoch), samples/s and peak memory
(GPU memory on CUDA, resident set size on CPU). The sweep times one inference batch and one
training step per model at each length, and fits the growth exponent of cost in L (log-log slope:
about 1 for linear models, approaching 2 for softmax attention as L grows).
Writes benchmarks/results/efficiency.json and efficiency.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

try:
    import glintru  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

ALL_MODELS = ("glintru", "gru4rec", "sasrec", "bert4rec", "linrec", "lightsans", "smlp4rec", "mamba4rec")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build(name: str, ds, hidden: int, max_length: int, device: torch.device):
    from glintru.models import build_model, resolve_config

    cfg = resolve_config(name, None, {"hidden_size": hidden, "max_length": max_length, "dropout": 0.2})
    feats = ds.item_features() if ds.feature_names else None
    return build_model(name, ds.n_items, cfg, item_features=feats).to(device)


def _time(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_one(name: str, data: str, hidden: int, max_length: int, batch_size: int, device: str,
                repeats: int, train_batches: int, full_epoch: bool, sweep: list[int]) -> dict:
    from glintru.data.batches import BatchLoader, split_inputs
    from glintru.data.dataset import load_dataset
    from glintru.train import resolve_device

    dev = resolve_device(device)
    torch.manual_seed(0)
    ds = load_dataset(data)
    model = _build(name, ds, hidden, max_length, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    users = np.arange(min(2048, ds.n_users))
    batch = split_inputs(ds, "test", max_length, users).to(dev)

    model.eval()
    with torch.no_grad():
        infer_s = _time(lambda: model.scores(batch.item_seq, batch.lengths), dev, repeats)

    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = BatchLoader(ds, max_length, batch_size, seed=0)
    n_batches = len(loader) if full_epoch else min(train_batches, len(loader))
    batches = []
    for i, b in enumerate(loader):
        if i >= n_batches + 1:
            break
        batches.append(b.to(dev))

    def step(b):
        loss = model.loss(b.item_seq, b.lengths, b.targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(batches[0])  # warm-up
    _sync(dev)
    t0 = time.perf_counter()
    samples = 0
    for b in batches[1:n_batches + 1]:
        step(b)
        samples += len(b)
    _sync(dev)
    timed = time.perf_counter() - t0
    timed_batches = max(len(batches) - 1, 1)
    epoch_s = timed if full_epoch else timed / timed_batches * len(loader)
    result = {
        "model": name,
        "infer_ms_per_batch": infer_s * 1000,
        "infer_batch_users": int(len(users)),
        "train_s_per_epoch": epoch_s,
        "epoch_estimated_from_batches": None if full_epoch else timed_batches,
        "train_samples_per_s": samples / timed if timed > 0 else float("nan"),
        "peak_memory_mb": _peak_mb(dev),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    # sequence-length sweep on random histories of exactly length L
    sweep_rows = []
    for L in sweep:
        m = _build(name, ds, hidden, L, dev)
        g = torch.Generator().manual_seed(L)
        B = min(batch_size, 256) if dev.type == "cpu" else batch_size
        seq = torch.randint(1, ds.n_items + 1, (B, L), generator=g).to(dev)
        lengths = torch.full((B,), L, dtype=torch.long, device=dev)
        targets = torch.randint(1, ds.n_items + 1, (B,), generator=g).to(dev)
        m.eval()
        with torch.no_grad():
            inf = _time(lambda: m.scores(seq, lengths), dev, repeats)
        m.train()
        o = torch.optim.Adam(m.parameters(), lr=1e-3)

        def tstep():
            loss = m.loss(seq, lengths, targets)
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()

        tr = _time(tstep, dev, max(2, repeats // 2))
        sweep_rows.append({"length": L, "batch": B, "infer_ms": inf * 1000, "train_step_ms": tr * 1000})
    if len(sweep_rows) >= 2:
        xs = np.log([r["length"] for r in sweep_rows])
        for key in ("infer_ms", "train_step_ms"):
            ys = np.log([r[key] for r in sweep_rows])
            # slope over the longest lengths, where fixed per-call costs no longer dominate
            k = max(2, len(xs) // 2)
            result[f"sweep_exponent_{key}"] = float(np.polyfit(xs[-k:], ys[-k:], 1)[0])
    result["sweep"] = sweep_rows
    return result


def markdown(rows: list[dict], meta: dict) -> str:
    users = rows[0]["infer_batch_users"] if rows else 0
    lines = [f"Efficiency on {meta['dataset']} ({meta['device']}, d={meta['hidden_size']}, "
             f"L={meta['max_length']}, batch {meta['batch_size']}, torch threads {meta['threads']})", "",
             f"| model | inference ms / batch of {users} users | train s / epoch | train samples/s | peak memory MB "
             "| params | growth exp. (infer) | growth exp. (train) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: r["infer_ms_per_batch"]):
        lines.append(f"| {r['model']} | {r['infer_ms_per_batch']:.1f} | {r['train_s_per_epoch']:.2f} | "
                     f"{r['train_samples_per_s']:.0f} | {r['peak_memory_mb']:.0f} | {r['parameters']:,} | "
                     f"{r.get('sweep_exponent_infer_ms', float('nan')):.2f} | "
                     f"{r.get('sweep_exponent_train_step_ms', float('nan')):.2f} |")
    if rows and rows[0].get("sweep"):
        lengths = [s["length"] for s in rows[0]["sweep"]]
        lines += ["", "Inference ms per batch by sequence length (random full-length histories)", "",
                  "| model | " + " | ".join(f"L={L}" for L in lengths) + " |",
                  "|---|" + "---:|" * len(lengths)]
        for r in rows:
            lines.append(f"| {r['model']} | " + " | ".join(f"{s['infer_ms']:.1f}" for s in r["sweep"]) + " |")
        lines += ["", "Training ms per step by sequence length", "",
                  "| model | " + " | ".join(f"L={L}" for L in lengths) + " |",
                  "|---|" + "---:|" * len(lengths)]
        for r in rows:
            lines.append(f"| {r['model']} | " + " | ".join(f"{s['train_step_ms']:.1f}" for s in r["sweep"])
                         + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="prepared dataset directory")
    p.add_argument("--models", default=",".join(ALL_MODELS))
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--max-length", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--train-batches", type=int, default=5, help="batches timed to estimate an epoch")
    p.add_argument("--full-epoch", action="store_true", help="time a whole epoch instead of estimating")
    p.add_argument("--sweep", default="50,100,200,400,800", help="sequence lengths; empty for none")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--one", help=argparse.SUPPRESS)  # child mode: measure one model, print JSON
    a = p.parse_args(argv)
    sweep = [int(x) for x in a.sweep.split(",") if x.strip()]
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.one:
        res = measure_one(a.one, a.data, a.hidden_size, a.max_length, a.batch_size, a.device, a.repeats,
                          a.train_batches, a.full_epoch, sweep)
        print(json.dumps(res))
        return 0
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    from glintru.models import get_model_class

    for m in models:
        get_model_class(m)  # unknown names fail here, before any timing
    rows = []
    for m in models:
        cmd = [sys.executable, __file__, "--one", m] + [x for x in (argv or sys.argv[1:])]
        print(f"measuring {m} ...", file=sys.stderr, flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            raise SystemExit(f"measuring {m} failed (exit {out.returncode})")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    from glintru.data.dataset import load_dataset
    from glintru.train import resolve_device

    meta = {"dataset": load_dataset(a.data).name, "device": str(resolve_device(a.device)),
            "hidden_size": a.hidden_size, "max_length": a.max_length, "batch_size": a.batch_size,
            "threads": torch.get_num_threads(), "repeats": a.repeats,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    table = markdown(rows, meta)
    print(table)
    outdir = Path(a.out)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "efficiency.json").write_text(json.dumps({"meta": meta, "models": rows}, indent=2) + "\n")
    (outdir / "efficiency.md").write_text(table)
    print(f"written: {outdir / 'efficiency.json'}, {outdir / 'efficiency.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
