"""What a search optimises: one or more objectives (`--objective ndcg@10,infer_ms`), which Optuna
sampler may propose trials for them (`--sampler`; `samplers.py` builds it), and the Pareto front
of the finished trials.

Accuracy objectives are validation metrics (selection never looks at test); cost objectives are
measured once per finished run. Pure functions: no Ray.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from glintru.train import TrainConfig

# cost objectives a user can name -> the trials.parquet column (all measured on the finished run)
COSTS = {
    "infer_ms": "infer_ms_per_batch",
    "epoch_s": "seconds_per_epoch",
    "memory_mb": "peak_memory_mb",
    "params": "num_parameters",
}
RANKING = re.compile(r"^(recall|hit|mrr|ndcg|precision)@(\d+)$")
# unless told otherwise a search optimises what a run selects its best epoch by
DEFAULT_OBJECTIVE = TrainConfig.select_metric
SINGLE_SAMPLERS = ("tpe", "random", "gp", "cmaes")
MULTI_SAMPLERS = ("tpe", "nsga2", "random")


@dataclass(frozen=True)
class Objective:
    name: str  # as the user wrote it: ndcg@10, infer_ms
    metric: str  # the reported key and trials.parquet column: valid/ndcg@10, infer_ms_per_batch
    mode: str  # max | min

    @property
    def k(self) -> int | None:
        match = RANKING.match(self.name)
        return int(match.group(2)) if match else None


def parse_objectives(text: str) -> list[Objective]:
    """`ndcg@10,infer_ms` or with directions `recall@20:max,memory_mb:min`; ValueError with the fix."""
    out: list[Objective] = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        name, _, mode = item.partition(":")
        if RANKING.match(name):
            obj = Objective(name, f"valid/{name}", mode or "max")
        elif name in COSTS:
            obj = Objective(name, COSTS[name], mode or "min")
        else:
            raise ValueError(
                f"unknown objective {name!r}: use a validation ranking metric (ndcg@10, "
                f"recall@20, mrr@10, hit@5, precision@10) or a cost ({', '.join(COSTS)})"
            )
        if obj.mode not in ("max", "min"):
            raise ValueError(f"objective {item!r}: the direction after ':' must be max or min")
        if any(o.name == obj.name for o in out):
            raise ValueError(f"objective {name!r} is listed twice")
        out.append(obj)
    if not out:
        raise ValueError("--objective names no metric")
    if out[0].k is None:
        # the first objective is what ASHA and Optuna see every epoch; costs exist only at the end
        raise ValueError(
            f"the first objective must be a validation ranking metric (e.g. ndcg@10), "
            f"not the cost {out[0].name!r}: write --objective ndcg@10,{out[0].name}"
        )
    return out


# what selects where nothing else is named (a search without objectives, an experiment.json without "metric")
DEFAULT_SELECTION = parse_objectives(DEFAULT_OBJECTIVE)[0]


def test_metric(metric: str) -> str | None:
    """The test column beside a validation metric (valid/ndcg@10 -> test/ndcg@10); None for a cost."""
    return "test/" + metric.removeprefix("valid/") if metric.startswith("valid/") else None


def check_sampler(name: str | None, n_objectives: int) -> str:
    """The sampler's name (default tpe); ValueError when it cannot serve this many objectives."""
    name = name or "tpe"
    allowed = SINGLE_SAMPLERS if n_objectives == 1 else MULTI_SAMPLERS
    if name not in allowed:
        kind = "one objective" if n_objectives == 1 else f"{n_objectives} objectives"
        raise ValueError(f"--sampler {name} does not serve {kind}; choose one of {', '.join(allowed)}")
    if name == "cmaes" and importlib.util.find_spec("cmaes") is None:
        raise ValueError("--sampler cmaes needs the cmaes package: pip install cmaes (or choose another sampler)")
    return name


def check_objectives(
    text: str, sampler: str | None, *, ks: Sequence[int], grid: bool, seeds: bool
) -> tuple[list[Objective], str]:
    """`--objective` parsed once, each objective at a cut-off the runs evaluate (`ks`), and the
    sampler that serves them; ValueError with the fix. `grid`, `seeds`: whether the search is a
    --grid and whether it reruns with --seeds."""
    try:
        objectives = parse_objectives(text)
    except ValueError as e:
        raise ValueError(f"--objective: {e}") from None
    for obj in objectives:
        if obj.k is not None and obj.k not in ks:
            raise ValueError(
                f"--objective {obj.name}: runs evaluate at k in {tuple(ks)}; add k with --set ks=... or choose one of them"
            )
    if grid and sampler:
        raise ValueError("--sampler applies to an Optuna search; a --grid search samples nothing")
    if len(objectives) > 1 and seeds and not grid:
        raise ValueError(
            "--seeds reruns the best configuration, but several objectives have a front of them: pick "
            "configurations from the Pareto front and rerun them with --grid KEY=V ... --seeds"
        )
    return objectives, check_sampler(sampler, len(objectives))


def pareto_mask(df: pd.DataFrame, objectives: Sequence[Objective]) -> pd.Series:
    """True for each finished trial that no other finished trial dominates (at least as good on
    every objective and better on one); False for the rest, and for trials missing a value."""
    mask = pd.Series(False, index=df.index)
    cols = [o.metric for o in objectives]
    if df.empty or any(c not in df.columns for c in cols):
        return mask
    done = df["completed"].astype(bool) if "completed" in df.columns else pd.Series(True, index=df.index)
    values = df[cols].apply(pd.to_numeric, errors="coerce")
    ok = done & values.notna().all(axis=1)
    # larger is better on every column after flipping the minimised ones
    signs = np.array([1.0 if o.mode == "max" else -1.0 for o in objectives])
    points = values[ok].to_numpy(dtype=float) * signs
    for i, idx in enumerate(values[ok].index):
        others = np.delete(points, i, axis=0)
        dominated = ((others >= points[i]).all(axis=1) & (others > points[i]).any(axis=1)).any()
        mask[idx] = not dominated
    return mask
