"""What Ray costs a search, and what the object store saves.

1. Overhead per trial: seconds from trial start to the first training step and per epoch report,
   for trials run by Ray Tune (single-worker trials train in their Tune trainable; add
   --workers-per-trial 2 for DDP trials through Ray Train) against the plain local loop. On Ray
   a trial starts when Tune launches it (the driver's on_trial_start).
2. Throughput: trials/hour for a fixed small workload (a grid of learning rates), Ray against the
   local loop run one trial after another. Medians are quoted; every value is in the JSON.
3. Data sharing: extra memory of N processes reading one dataset, from the object store (zero-copy)
   against each reading its own copy from Parquet.

    python benchmarks/search_overhead.py [--trials 4] [--epochs 3] [--gpus-per-trial 1 0.25]

Writes benchmarks/results/search_overhead.json and search_overhead.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    import glintru  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from glintru.data.dataset import load_dataset, write_prepared
from glintru.data.synthetic import generate
from glintru.train import TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = {"hidden_size": 32, "num_heads": 2, "num_layers": 1, "max_length": 50}


# -- 1 and 2: the local loop against Ray ----------------------------------------------------------


class FirstStep:
    """Records when each training run takes its first optimizer step (a global torch hook, so it
    does not depend on which loader the loop uses)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._armed = False
        self._handle = None

    def arm(self) -> None:
        """The next optimizer step is the first of a new run."""
        self._armed = True

    def _hook(self, optimizer, args, kwargs) -> None:
        if self._armed:
            self.times.append(time.perf_counter())
            self._armed = False

    def __enter__(self) -> FirstStep:
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        self._handle = register_optimizer_step_pre_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


def local_loop(data: Path, lrs: list[float], epochs: int, out: Path) -> dict:
    load_s, first_step_s, wall = [], [], []
    with FirstStep() as first:
        for i, lr in enumerate(lrs):
            first.arm()
            t0 = time.perf_counter()
            ds = load_dataset(data)
            load_s.append(time.perf_counter() - t0)
            # one thread, as each Ray trial gets with --cpus-per-trial 1
            cfg = TrainConfig(epochs=epochs, patience=epochs, lr=lr, batch_size=256, seed=0, num_threads=1)
            train(ds, "glintru", out / f"local{i}", overrides=MODEL, config=cfg, progress=False)
            wall.append(time.perf_counter() - t0)
            first_step_s.append(first.times[-1] - t0)
    total = sum(wall)
    return {
        "trials": len(lrs),
        "seconds": total,
        "trials_per_hour": 3600 * len(lrs) / total,
        "trial_seconds": wall,
        "dataset_load_seconds": statistics.median(load_s),
        "start_to_first_step_seconds": statistics.median(first_step_s),
        "first_step_seconds": first_step_s,
        "torch_threads": 1,
    }


class TrialStarts:
    """A Tune callback (built lazily: Ray is imported late) timing trial start-up from the driver.

    A trial that waits for a free slot starts when an earlier trial completes and frees it: the
    k-th trial to call the training loop (k >= the number running at once) was started by the
    (k - concurrency)-th completion. `slot_to_train_call` is that gap (Tune ends one trial,
    launches the next, its process starts, fetches the data, calls train()); `first_wave` is from
    the experiment's start (Tune's own start-up included) for the trials that did not wait.
    """

    @staticmethod
    def create():
        from ray import tune

        class _Callback(tune.Callback):
            def __init__(self):
                self.setup_time = 0.0
                self.train_calls: dict[str, float] = {}
                self.completions: list[float] = []

            def setup(self, **info):
                self.setup_time = time.time()

            def on_trial_result(self, iteration, trials, trial, result, **info):
                self.train_calls.setdefault(trial.trial_id, result["train_call_time"])

            def on_trial_complete(self, iteration, trials, trial, **info):
                self.completions.append(time.time())

            def gaps(self, concurrency: int) -> tuple[list[float], list[float]]:
                calls = sorted(self.train_calls.values())
                done = sorted(self.completions)
                first = [c - self.setup_time for c in calls[:concurrency]]
                later = [c - done[k] for k, c in enumerate(calls[concurrency:]) if k < len(done)]
                return first, later

        return _Callback()


def ray_search(
    data: Path,
    lrs: list[float],
    epochs: int,
    storage: Path,
    name: str,
    *,
    gpus_per_trial: float = 0.0,
    cpus_per_trial: float = 1.0,
    workers_per_trial: int = 1,
    max_concurrent: int | None = None,
    local_first_step: float,
) -> dict:
    from glintru.search import SearchSettings, results, run_search

    settings = SearchSettings(
        space="glintru",
        data=str(data),
        grid={"lr": lrs},
        scheduler="fifo",
        max_epochs=epochs,
        storage=str(storage),
        name=name,
        verbose=0,
        gpus_per_trial=gpus_per_trial,
        cpus_per_trial=cpus_per_trial,
        workers_per_trial=workers_per_trial,
        max_concurrent=max_concurrent,
        overrides={**MODEL, "patience": epochs, "batch_size": 256},
    )
    starts = TrialStarts.create()
    t0 = time.perf_counter()
    exp = run_search(settings, callbacks=(starts,))
    total = time.perf_counter() - t0
    df = results.read_trials(exp)
    concurrency = max_concurrent or int((os.cpu_count() or 1) // cpus_per_trial)
    first_wave, slot_to_call = starts.gaps(concurrency)
    launch_to_call = slot_to_call or first_wave
    col = lambda name: df[name].astype(float)  # noqa: E731
    return {
        "trials": len(df),
        "seconds_incl_ray_start": total,
        "trials_per_hour": 3600 * len(df) / total,
        "completed": int(df["completed"].sum()),
        "gpus_per_trial": gpus_per_trial,
        "cpus_per_trial": cpus_per_trial,
        "workers_per_trial": workers_per_trial,
        "max_concurrent": max_concurrent,
        "first_wave_to_train_call_seconds": first_wave,
        "slot_to_train_call_seconds": slot_to_call,
        "ray_overhead_to_train_call_seconds": statistics.median(launch_to_call),
        "worker_start_seconds": float(col("worker_start_seconds").median()),
        "data_fetch_seconds": float(col("data_fetch_seconds").median()),
        # train() itself takes the same time from its call to the first batch in both paths
        "start_to_first_step_seconds": statistics.median(launch_to_call) + local_first_step,
        "report_seconds": float(col("report_seconds").median()),
        "seconds_per_epoch": float(col("seconds_per_epoch").median()),
        "data_zero_copy": bool(df["data_zero_copy"].all()),
    }


# -- 3: data sharing ------------------------------------------------------------------------------


def big_dataset(path: Path, n_users: int, avg_length: int, n_items: int = 20000) -> Path:
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 2 * avg_length - 3, size=n_users)
    seqs = np.split(rng.integers(1, n_items + 1, size=int(lengths.sum()), dtype=np.int32), np.cumsum(lengths)[:-1])
    return write_prepared(
        path,
        seqs,
        [str(u) for u in range(n_users)],
        [str(i) for i in range(1, n_items + 1)],
        name="bench",
        source={"format": "benchmark"},
        params={},
    )


def sharing(path: Path, readers: list[int]) -> dict:
    import psutil
    import ray

    from glintru.search.data import fetch_dataset, in_shared_memory, share_dataset

    @ray.remote(num_cpus=0)
    class Reader:
        def pid(self) -> int:
            return os.getpid()

        def read(self, shared, from_disk: str | None) -> bool:
            self.ds = load_dataset(from_disk) if from_disk else fetch_dataset(shared)
            # touch every byte, as training does over an epoch
            self.total = int(self.ds.values.sum()) + int(self.ds.offsets.sum())
            return bool(in_shared_memory(self.ds))

    shared = share_dataset(path)
    out = {"dataset_mb": shared.nbytes / 2**20, "readers": readers, "shared": [], "private": []}
    for mode in ("shared", "private"):
        for n in readers:
            actors = [Reader.remote() for _ in range(n)]
            procs = [psutil.Process(p) for p in ray.get([a.pid.remote() for a in actors])]
            before = [p.memory_full_info().uss for p in procs]
            flags = ray.get([a.read.remote(shared, None if mode == "shared" else str(path)) for a in actors])
            after = [p.memory_full_info().uss for p in procs]
            extra = sum(a - b for a, b in zip(after, before)) / 2**20
            # the object store's one copy is paid once, however many readers map it
            total = extra + (shared.nbytes / 2**20 if mode == "shared" else 0.0)
            out[mode].append(
                {
                    "readers": n,
                    "private_mb": extra,
                    "total_data_mb": total,
                    "zero_copy": all(flags) and mode == "shared",
                }
            )
            for a in actors:
                ray.kill(a)
    return out


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    sh = report["sharing"] or {"readers": [], "shared": [], "private": [], "dataset_mb": 0}
    for mode, style in (("shared", "o-"), ("private", "s--")):
        ax1.plot(
            sh["readers"],
            [r["total_data_mb"] for r in sh[mode]],
            style,
            label="object store, zero-copy" if mode == "shared" else "own copy per process",
        )
    ax1.set_xlabel("processes reading the dataset")
    ax1.set_ylabel("memory held for the data (MB)")
    ax1.set_title(f"one {sh['dataset_mb']:.0f} MB dataset, N readers")
    ax1.set_xticks(sh["readers"])
    ax1.legend()
    names = ["local loop"] + [
        f"Ray, {r['gpus_per_trial']:g} GPU/trial" if r["gpus_per_trial"] else "Ray (CPU)" for r in report["ray"]
    ]
    values = [report["local"]["trials_per_hour"]] + [r["trials_per_hour"] for r in report["ray"]]
    ax2.bar(names, values, color=["gray"] + ["tab:blue"] * len(report["ray"]))
    ax2.set_ylabel("trials per hour")
    ax2.set_title(f"{report['workload']['trials']} trials x {report['workload']['epochs']} epochs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--items", type=int, default=500)
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        nargs="*",
        default=[],
        help="also run the Ray workload with these GPU shares (e.g. 1 0.25)",
    )
    p.add_argument(
        "--workers-per-trial", type=int, default=1, help="DDP workers per Ray trial (2+: trials run through Ray Train)"
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        help="Ray trials at once (default: as many as the CPUs fit; 1 matches the local loop)",
    )
    p.add_argument("--skip-sharing", action="store_true", help="skip part 3 (data sharing)")
    p.add_argument("--share-users", type=int, default=400_000, help="users of the data-sharing dataset")
    p.add_argument("--readers", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()

    import ray

    from glintru.search.ray_setup import runtime_env

    args.out.mkdir(parents=True, exist_ok=True)
    lrs = [float(x) for x in np.geomspace(3e-3, 1e-3, args.trials)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = generate(tmp / "data", n_users=args.users, n_items=args.items, avg_length=30, seed=0, features=False)
        local = local_loop(data, lrs, args.epochs, tmp / "local")
        print(
            f"local loop: {local['trials_per_hour']:.0f} trials/h, first step after "
            f"{local['start_to_first_step_seconds']:.2f} s",
            flush=True,
        )
        runs = []
        for gpus in [0.0] + list(args.gpus_per_trial):
            r = ray_search(
                data,
                lrs,
                args.epochs,
                tmp / "results",
                f"bench-{gpus:g}",
                gpus_per_trial=gpus,
                workers_per_trial=args.workers_per_trial,
                max_concurrent=args.max_concurrent,
                local_first_step=local["start_to_first_step_seconds"],
            )
            r["ratio_to_local"] = r["trials_per_hour"] / local["trials_per_hour"]
            runs.append(r)
            print(
                f"Ray ({gpus:g} GPU/trial, {args.workers_per_trial} worker(s)): {r['trials_per_hour']:.0f} "
                f"trials/h ({r['ratio_to_local']:.2f}x the local loop), first step after "
                f"{r['start_to_first_step_seconds']:.2f} s (median), {r['report_seconds'] * 1000:.0f} ms per report",
                flush=True,
            )
        share = None
        if not args.skip_sharing:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, runtime_env=runtime_env())
            try:
                share = sharing(big_dataset(tmp / "big", args.share_users, 50), args.readers)
            finally:
                ray.shutdown()
            print(
                "data memory (MB) by readers: shared "
                + ", ".join(f"{r['readers']}: {r['total_data_mb']:.0f}" for r in share["shared"])
                + "; private "
                + ", ".join(f"{r['readers']}: {r['total_data_mb']:.0f}" for r in share["private"])
            )
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "ray": ray.__version__,
        },
        "workload": {
            "trials": args.trials,
            "epochs": args.epochs,
            "max_concurrent": args.max_concurrent,
            "users": args.users,
            "items": args.items,
            "model": {"name": "glintru", **MODEL},
            "learning_rates": lrs,
        },
        "local": local,
        "ray": runs,
        "sharing": share,
    }
    (args.out / "search_overhead.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / "search_overhead.png")
    print(args.out / "search_overhead.json")


if __name__ == "__main__":
    main()
