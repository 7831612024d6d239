"""Builders of small, realistic experiment and run directories for the analysis tests.

Per-user metrics come from simulated ranks of the test item among 101 candidates (pop100-like):
a user's latent score is model strength - user difficulty + trial noise, so models differ by a
known amount on the same users, and every metric is consistent with one rank per user.

Runs and experiments record what their results rest on as glintru writes it (the dataset's
fingerprint, derived here from its name unless a trial sets its own, the split, the protocol and
the negatives' seed); `legacy=True` writes them as glintru did before it recorded any of that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

KS = (10, 20)
METRICS = tuple(f"{m}@{k}" for k in KS for m in ("recall", "hit", "mrr", "ndcg"))
# Relative cost of one epoch per model (GLINT-RU the cheapest, as in Table 3).
COST = {
    "gru4rec": 1.1,
    "bert4rec": 3.0,
    "sasrec": 2.0,
    "linrec": 1.3,
    "lightsans": 1.6,
    "smlp4rec": 1.5,
    "mamba4rec": 1.2,
    "glintru": 1.0,
}


@dataclass
class FakeTrial:
    model: str
    dataset: str
    seed: int
    config: dict[str, Any]
    users: pd.DataFrame  # user + one column per metric
    valid: dict[str, float]
    status: str = "TERMINATED"
    error: str | None = None
    efficiency: dict[str, float] = field(default_factory=dict)
    phase: str = "search"
    completed: bool = True  # False: stopped early by ASHA, so never tested
    eval_mode: str = "pop100"
    fingerprint: str | None = None  # None: fake_fingerprint(dataset), one per dataset name

    @property
    def test(self) -> dict[str, float]:
        return {c: float(self.users[c].mean()) for c in self.users.columns if c != "user"}

    def basis(self) -> dict[str, Any]:
        """What metrics.json and trials.parquet record beside the results."""
        return {
            "dataset_fingerprint": self.fingerprint or fake_fingerprint(self.dataset),
            "split": "leave-one-out",
            "eval_mode": self.eval_mode,
            "negative_seed": None if self.eval_mode == "full" else self.seed,
        }


def fake_fingerprint(dataset: str) -> str:
    """A stand-in for a prepared dataset's content fingerprint: one per name."""
    return hashlib.sha256(f"fake dataset {dataset}".encode()).hexdigest()


def ranks_to_metrics(ranks: np.ndarray, ks: Sequence[int] = KS) -> pd.DataFrame:
    """Leave-one-out metrics of one target per user from its 1-based rank."""
    ranks = np.asarray(ranks, dtype=float)
    out = {"user": np.arange(len(ranks), dtype=np.int32)}
    for k in ks:
        hit = ranks <= k
        out[f"recall@{k}"] = hit.astype(float)
        out[f"hit@{k}"] = hit.astype(float)
        out[f"mrr@{k}"] = np.where(hit, 1.0 / ranks, 0.0)
        out[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0)
    return pd.DataFrame(out)


def simulate_ranks(rng: np.random.Generator, difficulty: np.ndarray, strength: float, noise: float = 0.6) -> np.ndarray:
    score = strength - difficulty + rng.normal(0.0, noise, len(difficulty))
    return np.clip(np.floor(np.exp(2.3 - score)) + 1, 1, 101)


def make_trials(
    strengths: dict[str, float],
    datasets: dict[str, int],
    seeds: Sequence[int] = (0, 1, 2),
    configs: dict[str, list[dict[str, Any]]] | None = None,
    effect: Callable[[str, dict[str, Any]], float] | None = None,
    rng_seed: int = 0,
) -> list[FakeTrial]:
    """One trial per model x dataset x config x seed, with strength + effect(model, config)."""
    rng = np.random.default_rng(rng_seed)
    difficulty = {ds: np.random.default_rng(1000 + i).normal(0.0, 1.0, n) for i, (ds, n) in enumerate(datasets.items())}
    trials = []
    for ds in datasets:
        for model, strength in strengths.items():
            for config in (configs or {}).get(model, [{}]):
                cfg = {"hidden_size": 64, "num_layers": 2, "max_length": 50, "lr": 0.001, **config}
                s = strength + (effect(model, cfg) if effect else 0.0)
                for seed in seeds:
                    users = ranks_to_metrics(simulate_ranks(rng, difficulty[ds], s))
                    valid_ranks = simulate_ranks(rng, difficulty[ds], s)
                    valid = {c: float(v) for c, v in ranks_to_metrics(valid_ranks).drop(columns="user").mean().items()}
                    scale = COST.get(model, 1.5) * cfg["hidden_size"] / 64 * cfg["max_length"] / 50
                    scale *= 1 + 0.03 * cfg.get("kernel_size", 3) + 0.6 * (cfg["num_layers"] - 1)
                    eff = {
                        "seconds_per_epoch": 2.0 * scale * (1 + 0.01 * seed),
                        "infer_ms_per_batch": 30.0 * scale * (1 + 0.01 * seed),
                        "peak_memory_mb": 500.0 * scale,
                    }
                    trials.append(FakeTrial(model, ds, seed, cfg, users, valid, efficiency=eff))
    return trials


def explicit_trial(
    model: str,
    dataset: str,
    seed: int,
    values: dict[str, Sequence[float]],
    users: Sequence[int] | None = None,
    config: dict[str, Any] | None = None,
) -> FakeTrial:
    """A trial with hand-given per-user values (validation = test means)."""
    n = len(next(iter(values.values())))
    frame = pd.DataFrame({"user": np.asarray(users if users is not None else range(n), dtype=np.int32)})
    for k, v in values.items():
        frame[k] = np.asarray(v, dtype=float)
    t = FakeTrial(model, dataset, seed, dict(config or {}), frame, {})
    t.valid = t.test
    t.efficiency = {"seconds_per_epoch": 1.0, "infer_ms_per_batch": 10.0, "peak_memory_mb": 100.0}
    return t


def trials_frame(trials: Sequence[FakeTrial], prefix: str = "trial", legacy: bool = False) -> pd.DataFrame:
    rows = []
    for i, t in enumerate(trials):
        finished = t.status == "TERMINATED"
        tested = finished and t.completed
        row: dict[str, Any] = {
            "trial_id": f"{prefix}_{i:05d}",
            "phase": t.phase,
            "status": t.status,
            "error": t.error,
            "completed": tested,
            "model": t.model,
            "dataset": t.dataset,
            **({} if legacy else t.basis()),
            "seed": t.seed,
            "best_epoch": 7 + i % 5,
            "epochs": 12 + i % 5,
        }
        row.update({f"config/{k}": v for k, v in t.config.items()})
        row.update({f"valid/{k}": (v if finished else np.nan) for k, v in t.valid.items()})
        row.update({f"test/{k}": (v if tested else np.nan) for k, v in t.test.items()})
        row.update({k: (v if tested else np.nan) for k, v in t.efficiency.items()})
        row.update({"node": f"node-{i % 2}", "device": "cpu", "run_dir": f"/runs/{prefix}_{i:05d}"})
        rows.append(row)
    return pd.DataFrame(rows)


def write_experiment(
    path: Path,
    trials: Sequence[FakeTrial],
    name: str | None = None,
    metric: str = "valid/ndcg@10",
    skip_users: Sequence[int] = (),
    legacy: bool = False,
) -> Path:
    """EXP_DIR/{experiment.json, trials.parquet, users/<trial_id>.parquet} as the search writes them."""
    path = Path(path)
    (path / "users").mkdir(parents=True, exist_ok=True)
    name = name or path.name
    frame = trials_frame(trials, prefix=name, legacy=legacy)
    frame.to_parquet(path / "trials.parquet", index=False)
    for i, (t, trial_id) in enumerate(zip(trials, frame["trial_id"])):
        if t.status == "TERMINATED" and t.completed and i not in skip_users:
            t.users.to_parquet(path / "users" / f"{trial_id}.parquet", index=False)
    meta = {
        "name": name,
        "space": sorted({t.model for t in trials})[0],
        "model": sorted({t.model for t in trials}),
        "dataset": sorted({t.dataset for t in trials}),
        "eval_mode": trials[0].eval_mode if trials else "pop100",
        "metric": metric,
        "num_samples": len(trials),
    }
    fingerprints = {t.basis()["dataset_fingerprint"] for t in trials}
    if not legacy and len(fingerprints) == 1:  # a real search has one dataset
        meta["dataset_fingerprint"] = fingerprints.pop()
    (path / "experiment.json").write_text(json.dumps(meta, indent=2))
    return path


def write_run(path: Path, trial: FakeTrial, legacy: bool = False) -> Path:
    """A `glintru train` run directory (config.json, metrics.json, test_users.parquet, env.json)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    train_keys = {"lr", "batch_size", "weight_decay"}
    config = {
        "model": trial.model,
        "preset": None,
        "model_config": {k: v for k, v in trial.config.items() if k not in train_keys},
        "train_config": {
            "epochs": 20,
            "patience": 10,
            "lr": trial.config.get("lr", 0.001),
            "batch_size": 2048,
            "weight_decay": 0.0,
            "seed": trial.seed,
            "device": "cpu",
            "eval_mode": trial.eval_mode,
        },
        "dataset": {"path": f"/data/{trial.dataset}", "name": trial.dataset, "stats": {}},
    }
    basis = {} if legacy else trial.basis()
    if not legacy:
        config["dataset"]["fingerprint"] = basis["dataset_fingerprint"]
    metrics = {
        "valid": trial.valid,
        "test": trial.test,
        "best_epoch": 5,
        "epochs": 9,
        **trial.efficiency,
        "samples_per_second": 1000.0,
        "history": [],
        **basis,
    }
    (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "env.json").write_text(json.dumps({"device": "cpu", "hostname": "laptop"}))
    trial.users.to_parquet(path / "test_users.parquet", index=False)
    return path


PAPER_STRENGTHS = {"gru4rec": 0.0, "sasrec": 0.35, "mamba4rec": 0.45, "glintru": 0.8}


def kernel_effect(model: str, config: dict[str, Any]) -> float:
    """A mild optimum at k = 3 for the models with a temporal convolution."""
    k = config.get("kernel_size")
    return 0.0 if k is None else -0.04 * (k - 3) ** 2


def paper_like(root: Path, n_users: int = 300, seeds: Sequence[int] = (0, 1, 2)) -> Path:
    """Four models x two datasets x seeds, with GLINT-RU and Mamba4Rec swept over kernel size."""
    configs = {m: [{"kernel_size": k} for k in (1, 3, 5)] for m in ("glintru", "mamba4rec")}
    trials = make_trials(PAPER_STRENGTHS, {"ml-1m": n_users, "beauty": n_users}, seeds, configs, kernel_effect)
    return write_experiment(Path(root), trials, name="paper")


def search_like(
    root: Path, n_trials: int = 12, n_users: int = 120, rng_seed: int = 3, seeds: Sequence[int] = (0, 1, 2)
) -> Path:
    """One model's search as tune/search.py runs it: a "search" phase over kernel size, hidden size,
    lr and gate activation (one trial errored, one stopped by ASHA), then a "seeds" phase that
    reruns the best configuration by validation with several seeds."""
    rng = np.random.default_rng(rng_seed)
    configs = [
        {
            "kernel_size": int(rng.choice([1, 3, 5, 7])),
            "hidden_size": int(rng.choice([32, 64])),
            "lr": float(rng.choice([0.0005, 0.001, 0.003])),
            "gate_activation": str(rng.choice(["silu", "relu"])),
        }
        for _ in range(n_trials)
    ]

    def effect(model: str, cfg: dict[str, Any]) -> float:
        return kernel_effect(model, cfg) + (0.3 if cfg["gate_activation"] == "silu" else 0.0)

    trials = make_trials({"glintru": 0.6}, {"beauty": n_users}, (0,), {"glintru": configs}, effect, rng_seed)
    trials[4].status, trials[4].error = "ERROR", "RuntimeError: loss is NaN"
    trials[7].completed = False
    best = max((t for t in trials if t.status == "TERMINATED" and t.completed), key=lambda t: t.valid["ndcg@10"])
    rerun = make_trials({"glintru": 0.6}, {"beauty": n_users}, seeds, {"glintru": [best.config]}, effect, rng_seed + 1)
    for t in rerun:
        t.phase = "seeds"
    return write_experiment(Path(root), trials + rerun, name="search")


# Deterministic data for the golden files: ranks from modular arithmetic, no random generator,
# so the golden tables cannot drift with a numpy release.
# On ML-1M GLINT-RU is clearly best; on Beauty Mamba4Rec is close behind it.
GOLDEN_SPANS = {
    "ml-1m": {"gru4rec": 60, "sasrec": 34, "mamba4rec": 24, "glintru": 12},
    "beauty": {"gru4rec": 60, "sasrec": 34, "mamba4rec": 15, "glintru": 14},
}


def golden_trials(n_users: int = 120, seeds: Sequence[int] = (0, 1)) -> list[FakeTrial]:
    trials = []
    for d, ds in enumerate(("ml-1m", "beauty")):
        for m, (model, span) in enumerate(GOLDEN_SPANS[ds].items()):
            for seed in seeds:
                u = np.arange(n_users)
                ranks = 1 + (u * 7 + 3 * seed + 5 * d + m) % span
                valid_ranks = 1 + (u * 11 + 2 * seed + d) % span
                t = FakeTrial(
                    model,
                    ds,
                    seed,
                    {"hidden_size": 64, "kernel_size": 3, "lr": 0.001},
                    ranks_to_metrics(ranks),
                    {c: float(v) for c, v in ranks_to_metrics(valid_ranks).drop(columns="user").mean().items()},
                )
                scale = COST[model] * (1 + d)
                t.efficiency = {
                    "seconds_per_epoch": 2.0 * scale + 0.1 * seed,
                    "infer_ms_per_batch": 30.0 * scale,
                    "peak_memory_mb": 512.0 * scale,
                }
                trials.append(t)
    return trials


def golden_ablation_trials(n_users: int = 120, seeds: Sequence[int] = (0, 1)) -> list[FakeTrial]:
    trials = []
    for a, (act, span) in enumerate({"silu": 12, "relu": 25, "sigmoid": 23, "elu": 24}.items()):
        for seed in seeds:
            u = np.arange(n_users)
            ranks = 1 + (u * 7 + 3 * seed + a) % span
            t = FakeTrial(
                "glintru", "beauty", seed, {"hidden_size": 64, "gate_activation": act}, ranks_to_metrics(ranks), {}
            )
            t.valid = t.test
            t.efficiency = {"seconds_per_epoch": 3.8, "infer_ms_per_batch": 278.0, "peak_memory_mb": 2680.0}
            trials.append(t)
    return trials
