"""What a search found and what it cost: every epoch report of every trial in time order, the best
validation metric so far against cumulative trial-seconds and against wall time, and the epochs
that early stopping (ASHA) saved.

The reports are Tune's own per-trial `result.json` files (EXP_DIR/tune/<phase>/<trial>/), one JSON
line per epoch with the reported metrics, `timestamp` (wall clock at the report) and
`time_total_s` (seconds the trial had run). They exist from the first epoch on, so a search that
is still running or was interrupted can be read as well as a finished one.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.fs as pafs

from glintru.analysis.collect import Experiment

TIMELINE_COLUMNS = ("trial_id", "epoch", "timestamp", "time_total_s", "value", "final")
# a search phase is what an optimiser chose; seed reruns and grids are not part of it
SEARCH_PHASE = "search"


def _report_value(report: dict[str, Any], metric: str) -> float | None:
    """The trial's validation metric at one report: its best so far (`valid/...`), or the epoch's
    own (`epoch_valid/...`) where only that is there."""
    name = metric.removeprefix("valid/")
    for key in (f"valid/{name}", f"epoch_valid/{name}"):
        value = report.get(key)
        if value is not None:
            return float(value)
    return None


def read_timeline(exp: Experiment, metric: str = "valid/ndcg@10", phase: str = SEARCH_PHASE) -> pd.DataFrame:
    """One row per epoch report of every trial of `phase`, sorted by wall clock: trial_id, epoch,
    timestamp, time_total_s, value (the trial's `metric` at that report) and final (the run ended
    there, tested). Empty when the phase has no reports."""
    root = posixpath.join(exp.root, "tune", phase)
    fs = exp.fs
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return pd.DataFrame(columns=list(TIMELINE_COLUMNS))
    rows: list[dict[str, Any]] = []
    for info in fs.get_file_info(pafs.FileSelector(root)):
        if info.type != pafs.FileType.Directory:
            continue
        path = posixpath.join(info.path, "result.json")
        if fs.get_file_info(path).type != pafs.FileType.File:
            continue
        with fs.open_input_stream(path) as f:
            text = f.read().decode("utf-8")
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                report = json.loads(line)
            except json.JSONDecodeError:
                # the last line of a trial killed while writing it; earlier lines stand
                if n == len(text.splitlines()):
                    continue
                raise ValueError(f"{path}: line {n} is not JSON") from None
            value = _report_value(report, metric)
            if value is None or "timestamp" not in report or "time_total_s" not in report:
                continue
            rows.append(
                {
                    "trial_id": str(report.get("trial_id") or info.base_name),
                    "epoch": int(report.get("epoch", report.get("training_iteration", 0))),
                    "timestamp": float(report["timestamp"]),
                    "time_total_s": float(report["time_total_s"]),
                    "value": value,
                    "final": bool(report.get("final", False)),
                }
            )
    frame = pd.DataFrame(rows, columns=list(TIMELINE_COLUMNS))
    return frame.sort_values(["timestamp", "trial_id", "epoch"], kind="stable").reset_index(drop=True)


def time_to_quality(timeline: pd.DataFrame, maximize: bool = True) -> pd.DataFrame:
    """After each report: wall_seconds (since the first trial started), trial_seconds (the time all
    trials had run by then, summed) and best (the best value any trial had reached)."""
    if timeline.empty:
        return pd.DataFrame(columns=["trial_id", "wall_seconds", "trial_seconds", "best", "value"])
    t = timeline.sort_values(["timestamp", "trial_id", "epoch"], kind="stable").reset_index(drop=True)
    # a trial started when its first report came minus the time it had run by then
    start = float((t["timestamp"] - t["time_total_s"]).min())
    latest: dict[str, float] = {}
    spent = []
    for trial_id, seconds in zip(t["trial_id"], t["time_total_s"]):
        latest[trial_id] = seconds
        spent.append(sum(latest.values()))
    best = t["value"].cummax() if maximize else t["value"].cummin()
    return pd.DataFrame(
        {
            "trial_id": t["trial_id"],
            "wall_seconds": t["timestamp"] - start,
            "trial_seconds": np.asarray(spent, dtype=float),
            "best": best.to_numpy(),
            "value": t["value"].to_numpy(),
        }
    )


def first_reaching(curve: pd.DataFrame, target: float, maximize: bool = True) -> pd.Series | None:
    """The first point of a time-to-quality curve whose best reaches `target`; None if none does."""
    hit = curve[curve["best"] >= target] if maximize else curve[curve["best"] <= target]
    return None if hit.empty else hit.iloc[0]


@dataclass(frozen=True)
class EpochBudget:
    """Trial-epochs run against what every trial would have run without early stopping."""

    trials: int
    max_epochs: int
    epochs_run: int

    @property
    def budget(self) -> int:
        return self.trials * self.max_epochs

    @property
    def saved_fraction(self) -> float:
        return 1.0 - self.epochs_run / self.budget if self.budget else 0.0


def epoch_budget(timeline: pd.DataFrame, max_epochs: int) -> EpochBudget:
    """Trial-epochs of a phase from its reports (the last epoch each trial reported)."""
    last = timeline.groupby("trial_id")["epoch"].max() if not timeline.empty else pd.Series(dtype=int)
    return EpochBudget(trials=len(last), max_epochs=int(max_epochs), epochs_run=int(last.sum()))


def levelling(timeline: pd.DataFrame, window: int = 10) -> pd.DataFrame:
    """Whether each trial's validation had levelled off when it ended: one row per trial with
    epochs (its last reported epoch), best (its best value by then), best_before (its best
    `window` epochs earlier) and rise (best - best_before; 0 where the last `window` epochs found
    nothing better). best_before and rise are NaN for a trial that ran `window` epochs or fewer.
    For a maximised metric: the best is the running maximum of the reported values, which are the
    trials' best so far where Tune reports `valid/...` and each epoch's own otherwise."""
    if window < 1:
        raise ValueError(f"window must be >= 1 epoch, got {window}")
    rows = []
    for trial_id, t in timeline.groupby("trial_id", sort=True):
        t = t.sort_values("epoch", kind="stable")
        running = t["value"].cummax()
        last = int(t["epoch"].iloc[-1])
        earlier = running[t["epoch"] <= last - window]
        best = float(running.iloc[-1])
        before = float(earlier.iloc[-1]) if not earlier.empty else np.nan
        rows.append(
            {"trial_id": str(trial_id), "epochs": last, "best": best, "best_before": before, "rise": best - before}
        )
    return pd.DataFrame(rows, columns=["trial_id", "epochs", "best", "best_before", "rise"])


def search_cost_table(experiments: dict[str, Experiment], metric: str = "valid/ndcg@10") -> pd.DataFrame:
    """One row per search: trials, trial-epochs against the budget, the best value, and the
    trial-seconds and wall seconds each needed to come within 1% of the best that any of them found
    (relative to that best; NaN where a search never got there)."""
    curves: dict[str, pd.DataFrame] = {}
    budgets: dict[str, EpochBudget] = {}
    modes: dict[str, bool] = {}
    for name, exp in experiments.items():
        timeline = read_timeline(exp, metric)
        if timeline.empty:
            continue
        maximize = str(exp.meta.get("mode", "max")) == "max"
        modes[name] = maximize
        curves[name] = time_to_quality(timeline, maximize)
        max_epochs = int(exp.meta.get("settings", {}).get("max_epochs") or timeline["epoch"].max())
        budgets[name] = epoch_budget(timeline, max_epochs)
    if not curves:
        return pd.DataFrame()
    if len(set(modes.values())) > 1:
        raise ValueError("the searches optimise in opposite directions; compare searches of one objective")
    maximize = next(iter(modes.values()))
    bests = {n: float(c["best"].iloc[-1]) for n, c in curves.items()}
    overall = max(bests.values()) if maximize else min(bests.values())
    target = overall * (0.99 if maximize else 1.01)
    rows = []
    for name, curve in curves.items():
        exp, b = experiments[name], budgets[name]
        hit = first_reaching(curve, target, maximize)
        rows.append(
            {
                "search": name,
                "sampler": exp.meta.get("sampler"),
                "scheduler": exp.meta.get("scheduler"),
                "trials": b.trials,
                "trial_epochs": b.epochs_run,
                "budget_epochs": b.budget,
                "saved": b.saved_fraction,
                "best": bests[name],
                "trial_seconds": float(curve["trial_seconds"].iloc[-1]),
                "wall_seconds": float(curve["wall_seconds"].iloc[-1]),
                "trial_seconds_to_99pct": np.nan if hit is None else float(hit["trial_seconds"]),
                "wall_seconds_to_99pct": np.nan if hit is None else float(hit["wall_seconds"]),
            }
        )
    return pd.DataFrame(rows)


__all__ = [
    "EpochBudget",
    "epoch_budget",
    "first_reaching",
    "levelling",
    "read_timeline",
    "search_cost_table",
    "time_to_quality",
]
