"""Figures: metric and cost vs a hyperparameter (paper Figures 3-6), search history, importances,
the Pareto front of a multi-objective search.

Figures are built with the object-oriented matplotlib API on the Agg canvas (PNG and PDF), so no
global pyplot state is touched and the functions return the `Figure` for inspection. A point at x = v is the
configuration chosen on validation among the trials with that parameter value (mean over its
seeds, error bar = sd over seeds when there are several): for a controlled sweep that is simply
the mean over seeds, for a search it is the best configuration found at each value.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from glintru.analysis.collect import FINISHED, select_best
from glintru.analysis.paper import PAPER_METRICS
from glintru.analysis.tables import MODEL_ORDER, dataset_name, metric_name, model_name, ordered, value_name

if TYPE_CHECKING:
    from glintru.analysis.studies import StudyTable

PARAM_LABELS = {
    "kernel_size": "kernel size k",
    "hidden_size": "hidden size d",
    "num_layers": "layers L",
    "max_length": "max sequence length N",
    "lr": "learning rate",
    "dropout": "dropout",
}
COST_LABELS = {
    "infer_ms_per_batch": "inference (ms/batch)",
    "seconds_per_epoch": "training (s/epoch)",
    "peak_memory_mb": "peak memory (MB)",
}
PAPER_TEST_METRICS = tuple(f"test/{m}" for m in PAPER_METRICS)
TRIAL_ORDER_COLUMNS = ("trial_number", "start_time", "timestamp")


def param_label(column: str) -> str:
    name = column.removeprefix("config/")
    return PARAM_LABELS.get(name, name)


def value_label(column: str) -> str:
    if column in COST_LABELS:
        return COST_LABELS[column]
    split = column.split("/", 1)[0] if "/" in column else ""
    prefix = {"valid": "validation ", "test": "test "}.get(split, "")
    return prefix + metric_name(column)


def _figure(ncols: int, width: float = 4.2, height: float = 3.3, left: float = 0.8) -> tuple[Figure, list]:
    """A row of `ncols` panels with margins fixed in inches (a layout solver would cost more than the plot)."""
    fig = Figure(figsize=(width * ncols, height))
    FigureCanvasAgg(fig)
    total = width * ncols
    panel = (total - left - 0.25 - 0.8 * (ncols - 1)) / ncols
    fig.subplots_adjust(
        left=left / total, right=1 - 0.25 / total, bottom=0.6 / height, top=1 - 0.55 / height, wspace=0.8 / panel
    )
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def _one_dataset(trials: pd.DataFrame, dataset: str | None) -> tuple[pd.DataFrame, str]:
    present = trials["dataset"].dropna().unique().tolist()
    if dataset is None:
        if len(present) != 1:
            raise ValueError(
                f"the trials cover {len(present)} datasets ({', '.join(map(str, present))}); pass dataset="
            )
        dataset = present[0]
    return trials[trials["dataset"] == dataset], dataset


def sweep(
    trials: pd.DataFrame, param: str, value: str, select: str = "valid/ndcg@10", dataset: str | None = None
) -> pd.DataFrame:
    """Per model and parameter value: mean, sd and seed count of `value` (see module docstring)."""
    if param not in trials.columns:
        raise KeyError(f"no column {param!r} in the trials")
    t, _ = _one_dataset(trials, dataset)
    chosen = select_best(t, select, by=("model", "dataset", param))
    chosen = chosen[chosen[value].notna()]
    agg = chosen.groupby(["model", param])[value].agg(["mean", "std", "count"]).reset_index()
    return agg.rename(columns={param: "x", "count": "seeds"}).sort_values(["model", "x"]).reset_index(drop=True)


def _lines(ax, data: pd.DataFrame) -> None:
    for model in ordered(data["model"].tolist(), MODEL_ORDER):
        d = data[data["model"] == model]
        yerr = d["std"].where(d["seeds"] > 1)
        ax.errorbar(
            d["x"].astype(float),
            d["mean"],
            yerr=None if yerr.isna().all() else yerr.fillna(0),
            marker="o",
            capsize=3,
            label=model_name(model),
        )


def metric_vs_param(
    trials: pd.DataFrame,
    param: str,
    metrics: Sequence[str] = PAPER_TEST_METRICS,
    select: str = "valid/ndcg@10",
    dataset: str | None = None,
) -> Figure:
    """One panel per metric: the metric against a hyperparameter, one line per model (Figures 3, 5, 6)."""
    t, dataset = _one_dataset(trials, dataset)
    fig, axes = _figure(len(metrics))
    for ax, metric in zip(axes, metrics):
        _lines(ax, sweep(t, param, metric, select, dataset))
        ax.set_xlabel(param_label(param))
        ax.set_ylabel(value_label(metric))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{dataset_name(dataset)}: {value_label(metrics[0]).split(' ', 1)[0]} metrics vs {param_label(param)}")
    return fig


def cost_vs_param(
    trials: pd.DataFrame,
    param: str,
    costs: Sequence[str] = ("infer_ms_per_batch", "seconds_per_epoch", "peak_memory_mb"),
    select: str = "valid/ndcg@10",
    dataset: str | None = None,
) -> Figure:
    """One panel per cost (time, memory) against a hyperparameter, one line per model (Figure 4)."""
    t, dataset = _one_dataset(trials, dataset)
    costs = [c for c in costs if c in t.columns and t[c].notna().any()]
    if not costs:
        raise ValueError("the trials hold no efficiency figures to plot")
    fig, axes = _figure(len(costs))
    for ax, cost in zip(axes, costs):
        _lines(ax, sweep(t, param, cost, select, dataset))
        ax.set_xlabel(param_label(param))
        ax.set_ylabel(value_label(cost))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{dataset_name(dataset)}: cost vs {param_label(param)}")
    return fig


def trial_order(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials in the order they started (a start/number column if present, else file order)."""
    for col in TRIAL_ORDER_COLUMNS:
        if col in trials.columns and trials[col].notna().all():
            return trials.sort_values(col, kind="stable")
    return trials


def optimisation_history(trials: pd.DataFrame, metric: str = "valid/ndcg@10", maximize: bool = True) -> Figure:
    """Each finished trial's `metric` in start order with the best-so-far line, per model and dataset.

    Reruns of a "seeds" phase are not part of the optimisation and are left out.
    """
    if "phase" in trials.columns:
        trials = trials[trials["phase"] != "seeds"]
    t = trial_order(trials).reset_index(drop=True)
    t["_order"] = np.arange(1, len(t) + 1)
    t = t[(t["status"] == FINISHED) & t[metric].notna()] if "status" in t.columns else t[t[metric].notna()]
    if t.empty:
        raise ValueError(f"no finished trials with {metric} to plot")
    fig, (ax,) = _figure(1, width=6.0, height=3.8)
    groups = list(t.groupby(["model", "dataset"], sort=False))
    for (model, ds), g in groups:
        label = model_name(model) if len(groups) == 1 else f"{model_name(model)} / {dataset_name(ds)}"
        best = g[metric].cummax() if maximize else g[metric].cummin()
        points = ax.scatter(g["_order"], g[metric], s=14, alpha=0.5, label=f"{label} (trial)")
        ax.step(g["_order"], best, where="post", color=points.get_facecolor()[0][:3], label=f"{label} (best so far)")
    ax.set_xlabel("trial (start order)")
    ax.set_ylabel(value_label(metric))
    ax.set_title("Optimisation history")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def time_to_quality_plot(curves: dict[str, pd.DataFrame], metric: str = "valid/ndcg@10") -> Figure:
    """The best `metric` found so far by each search (glintru.analysis.timeline.time_to_quality),
    against the trial-seconds it had spent (left) and against wall time (right)."""
    curves = {name: c for name, c in curves.items() if not c.empty}
    if not curves:
        raise ValueError(f"no search reported {metric}")
    fig, axes = _figure(2, width=5.0, height=3.6)
    for name, curve in curves.items():
        for ax, x, scale in ((axes[0], "trial_seconds", 3600.0), (axes[1], "wall_seconds", 3600.0)):
            ax.step(curve[x] / scale, curve["best"], where="post", label=name)
    axes[0].set_xlabel("cumulative trial time (h)")
    axes[1].set_xlabel("wall time (h)")
    for ax in axes:
        ax.set_ylabel(f"best {value_label(metric)} so far")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle("Time to quality")
    return fig


def study_plot(table: StudyTable) -> Figure:
    """One study (glintru.analysis.studies.study_table): the test metric of each value, mean with an
    error bar of sd over seeds, a star where it differs from the reference after Holm and the
    paper's figure as an open marker (left); training seconds per epoch and inference ms per batch
    (middle, right), each on its own axis."""
    f, study = table.frame, table.study
    if f.empty:
        raise ValueError(f"the {study.name} study has no tested row to plot")
    metric = table.metrics[-1]
    x = np.arange(len(f))
    labels = [value_name(v) for v in f["value"]]
    fig, (acc, train, infer) = _figure(3, width=4.2, height=3.6)
    mean, sd = f[f"test/{metric}"].to_numpy(float), f[f"sd/{metric}"].to_numpy(float)
    colors = ["tab:red" if v == study.reference else "tab:blue" for v in f["value"]]
    acc.errorbar(x, mean, yerr=np.nan_to_num(sd), fmt="none", ecolor="0.4", capsize=3)
    acc.scatter(x, mean, c=colors, s=36, zorder=3, label=f"this platform (mean ± sd, {int(f['seeds'].max())} seeds)")
    for xi, m, s_, p in zip(x, mean, np.nan_to_num(sd), f[f"p_holm/{metric}"]):
        if p < 0.05:
            acc.annotate("*", (xi, m + s_), ha="center", va="bottom", fontsize=12)
    paper = f[f"paper/{metric}"].to_numpy(float)
    if np.isfinite(paper).any():
        acc.scatter(x, paper, facecolors="none", edgecolors="k", s=36, label="paper")
    acc.set_ylabel(f"test {metric_name(metric)}")
    acc.set_title(f"{study.title} (red: {value_name(study.reference)}; * p < 0.05, Holm)", fontsize="small")
    acc.legend(fontsize="x-small")
    for ax, column in ((train, "seconds_per_epoch"), (infer, "infer_ms_per_batch")):
        ax.bar(x, f[column], 0.6, color=colors)
        ax.set_ylabel(COST_LABELS[column])
    for ax in (acc, train, infer):
        ax.set_xticks(x, labels, rotation=30 if max(map(len, labels)) > 4 else 0, fontsize="small")
        ax.set_xlabel(study.key)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{study.title} on {table.dataset}")
    return fig


def pareto_plot(trials: pd.DataFrame, y: str, x: str, maximize_y: bool = True, minimize_x: bool = True) -> Figure:
    """A two-objective search: every finished trial by its two objectives (x: typically a cost such
    as infer_ms_per_batch, y: a validation metric), the Pareto-optimal ones (column `pareto` of
    trials.parquet) marked and joined in order of x."""
    t = trials[trials[x].notna() & trials[y].notna()]
    if "completed" in t.columns:
        t = t[t["completed"].astype(bool)]
    if t.empty:
        raise ValueError(f"no finished trials with both {y} and {x} to plot")
    front = t[t["pareto"].astype(bool)] if "pareto" in t.columns else t.iloc[0:0]
    fig, (ax,) = _figure(1, width=6.0, height=3.8)
    ax.scatter(t[x], t[y], s=16, color="0.6", alpha=0.7, label="trial")
    if not front.empty:
        front = front.sort_values(x, ascending=minimize_x)
        ax.step(front[x], front[y], where="post", color="tab:red", alpha=0.6)
        ax.scatter(front[x], front[y], s=30, color="tab:red", label=f"Pareto front ({len(front)})", zorder=3)
    better = (
        ("lower" if minimize_x else "higher")
        + " "
        + value_label(x)
        + ", "
        + ("higher" if maximize_y else "lower")
        + " "
        + value_label(y)
        + " is better"
    )
    ax.set_xlabel(value_label(x))
    ax.set_ylabel(value_label(y))
    ax.set_title(f"Pareto front ({better})", fontsize="small")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def importance_plot(importances: pd.DataFrame, method: str, metric: str = "valid/ndcg@10") -> Figure:
    """Horizontal bars of parameter importances (from `stats.param_importances`)."""
    fig, (ax,) = _figure(1, width=6.0, height=0.45 * len(importances) + 1.4, left=1.9)
    imp = importances.iloc[::-1]
    ax.barh([param_label(p) for p in imp["param"]], imp["importance"])
    ax.set_xlabel(f"importance for {value_label(metric)} ({method})")
    ax.set_ylabel("parameter")
    ax.set_title("Parameter importances")
    return fig


def save_figure(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write `stem`.png and `stem`.pdf under out_dir; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths
