"""What a search shows: a line for each trial Tune ends while it runs, and at its end the best trials
by validation and, with several objectives, the Pareto front. Text only; others print it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from glintru.search import results
from glintru.search.objectives import Objective, test_metric
from glintru.search.results import FINAL_KEY, SELECTION_METRIC


def format_trial_line(trial_id: str, result: dict[str, Any], objectives: Sequence[str]) -> str:
    """A trial Tune ended, from its last report: finished (trained to its end and tested) or stopped
    by the scheduler, its epochs, each searched metric (a validation one with its test value where
    there is one) and its seconds."""
    if not result:
        return f"trial {trial_id} ended before its first epoch"
    state = "finished" if result.get(FINAL_KEY) else "stopped by the scheduler"
    values = []
    for key in (k for name in objectives for k in (name, test_metric(name)) if k):
        value = result.get(key)
        if isinstance(value, (int, float)) and not math.isnan(value):  # costs are NaN until the end
            values.append(f"{key} {value:.4f}" if "/" in key else f"{key} {value:.4g}")  # valid/, test/
    seconds = f"{float(result.get('time_total_s', 0.0)):.1f} s"
    return f"trial {trial_id} {state} after {result.get('epoch', 0)} epochs: " + ", ".join([*values, seconds])


def _table(df: Any, sort: list[str], ascending: list[bool], extra: list[str], n: int) -> str:
    import pandas as pd

    ranked = df.sort_values(sort, ascending=ascending, na_position="last").head(n)
    cols = ["trial_id", "phase", "status", "seed"]
    cols += [c for c in ranked.columns if c.startswith("config/") and ranked[c].notna().any()]
    tests = [t for t in map(test_metric, extra) if t]
    cols += [c for c in dict.fromkeys(extra + tests + ["test/recall@10", "epochs"]) if c in ranked.columns]
    table = ranked[cols].rename(columns=lambda c: c.split("/", 1)[1] if c.startswith("config/") else c)
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.float_format", "{:.4f}".format):
        return table.to_string(index=False)


def format_best(df: Any, n: int = 10, metric: str = SELECTION_METRIC, mode: str = "max") -> str:
    """The table of the best trials by a validation metric."""
    if df.empty:
        return "no trials"
    return _table(df, [metric], [mode == "min"], [metric], n)


def format_pareto(df: Any, objectives: list[Objective], n: int = 50) -> str:
    """The table of the Pareto-optimal trials, by the first objective."""
    front = df[df["pareto"]] if "pareto" in df.columns else df.iloc[0:0]
    if front.empty:
        return "no finished trial has every objective"
    first = objectives[0]
    return _table(front, [first.metric], [first.mode == "min"], [o.metric for o in objectives], n)


def format_summary(df: Any, metric: str, mode: str, objectives: list[Objective]) -> str:
    """The best trials and, with several objectives, the Pareto front, under one heading each."""
    errored = int((df["status"] == "ERROR").sum()) if "status" in df.columns else 0
    lines = [
        f"best trials by {metric} ({len(df)} trials, {errored} errored):",
        format_best(df, metric=metric, mode=mode),
    ]
    if len(objectives) > 1:
        names = ", ".join(f"{o.name} ({o.mode})" for o in objectives)
        lines += [
            "",
            f"Pareto front over {names}: {int(df['pareto'].sum())} of {int(df['completed'].sum())} finished trials",
            format_pareto(df, objectives),
        ]
    return "\n".join(lines)


def summary(exp_dir: str) -> str:
    """format_summary of a written experiment (EXP_DIR/experiment.json and trials.parquet)."""
    info = results.read_experiment(exp_dir)
    objectives = [Objective(**o) for o in info.get("objectives", [])]
    return format_summary(
        results.read_trials(exp_dir), info.get("metric", SELECTION_METRIC), info.get("mode", "max"), objectives
    )
