"""The table of one study (glintru.search.studies): a row per value of its setting with the test
metrics' mean and sd over seeds, the paired t-test over users against the full model's value
(Holm-adjusted over the rows), training seconds per epoch, inference time and the paper's figure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from glintru.analysis.collect import Results, tested
from glintru.analysis.comparability import SAME_SEEDS, check_comparable, check_negatives
from glintru.analysis.stats import SignificanceError, holm, paired_ttest, welch_ttest
from glintru.analysis.tables import (
    PAPER_METRICS,
    Layout,
    format_number,
    format_p,
    frame_layout,
    json_value,
    metric_name,
    render_markdown,
    value_name,
)
from glintru.analysis.timeline import levelling, read_timeline
from glintru.search.studies import Study

COST_COLUMNS = ("seconds_per_epoch", "infer_ms_per_batch", "peak_memory_mb")
# how far back a row's validation is compared to say whether it had levelled off by the budget's end
LEVEL_WINDOW = 10


@dataclass
class StudyTable:
    study: Study
    frame: pd.DataFrame  # one row per value, in the study's order
    metrics: tuple[str, ...]
    dataset: str
    window: int = LEVEL_WINDOW

    def display(self) -> pd.DataFrame:
        """The table as printed: mean ± sd, a `*` where the row differs from the reference with
        Holm-adjusted p < 0.05 (paired over users), the paper's figure beside each metric."""
        f = self.frame
        out = pd.DataFrame({self.study.key: [value_name(v) for v in f["value"]], "seeds": f["seeds"]})
        for m in self.metrics:
            marks = np.where(f[f"p_holm/{m}"] < 0.05, "*", "")
            out[f"test {metric_name(m)}"] = [
                f"{mean:.4f}{mark} ± {sd:.4f}" if not np.isnan(sd) else f"{mean:.4f}{mark}"
                for mean, sd, mark in zip(f[f"test/{m}"], f[f"sd/{m}"], marks)
            ]
            if self.study.paper:
                out[f"paper {metric_name(m)}"] = [format_number(v, 4) for v in f[f"paper/{m}"]]
        main = self.metrics[-1]
        out[f"diff {metric_name(main)}"] = [format_number(v, 4, signed=True) for v in f[f"diff/{main}"]]
        out["p (Holm)"] = [format_p(v) for v in f[f"p_holm/{main}"]]
        out[f"valid {metric_name(main)}"] = [format_number(v, 4) for v in f[f"valid/{main}"]]
        out["best epoch"] = [format_number(v, 1) for v in f["best_epoch"]]
        out[f"rise last {self.window} ep"] = [format_number(v, 4, signed=True) for v in f["rise"]]
        out["s/epoch"] = [format_number(v, 1) for v in f["seconds_per_epoch"]]
        out["infer ms"] = [format_number(v, 1) for v in f["infer_ms_per_batch"]]
        out["peak MB"] = [format_number(v, 0) for v in f["peak_memory_mb"]]
        return out

    def caption(self) -> str:
        return (
            f"{self.study.title} on {self.dataset}: test metrics, mean ± sd over seeds; * differs from "
            f"{self.study.key}={value_name(self.study.reference)} (paired t-test over users, per-user metrics "
            f"averaged over seeds, Holm-adjusted over the rows, p < 0.05). Rise: how much the best validation "
            f"{metric_name(self.metrics[-1])} grew in each run's last {self.window} epochs, mean over seeds (0: levelled "
            f"off). Paper: {self.study.paper_source or 'no figures'}."
        )

    def layout(self) -> Layout:
        return frame_layout(self.display(), caption=self.caption())

    def to_markdown(self) -> str:
        return render_markdown(self.layout())

    def to_json(self) -> dict[str, Any]:
        return {
            "study": self.study.name,
            "key": self.study.key,
            "reference": self.study.reference,
            "dataset": self.dataset,
            "paper_source": self.study.paper_source,
            "claim": self.study.claim,
            "level_window": self.window,
            "rows": [{k: json_value(v) for k, v in row.items()} for row in self.frame.to_dict("records")],
        }


def _user_means(results: Results, trials: pd.DataFrame, metric: str) -> pd.Series:
    """Per-user test `metric` averaged over the trials (seeds) of one row."""
    frames = [results.users(t).set_index("user")[metric] for t in trials.to_dict("records")]
    return pd.concat(frames, axis=1).mean(axis=1)


def _rises(results: Results, trials: pd.DataFrame, metric: str, window: int) -> pd.Series:
    """Each trial's rise of its best validation `metric` over its last `window` epochs, from the
    epoch reports of its experiment (NaN where a trial has none, e.g. a single `glintru train` run)."""
    parts = []
    phases = trials["phase"] if "phase" in trials else pd.Series("grid", index=trials.index)
    for name, phase in dict.fromkeys(zip(trials["experiment"], phases)):
        exp = results.experiments[str(name)]
        if exp.kind != "experiment":
            continue
        timeline = read_timeline(exp, f"valid/{metric}", phase=str(phase))
        if not timeline.empty:
            parts.append(levelling(timeline, window).assign(experiment=str(name)))
    if not parts:
        return pd.Series(np.nan, index=trials.index)
    found = pd.concat(parts).set_index(["experiment", "trial_id"])["rise"]
    keys = pd.MultiIndex.from_arrays([trials["experiment"].astype(str), trials["trial_id"].astype(str)])
    return pd.Series(found.reindex(keys).to_numpy(), index=trials.index)


def reference_rows(
    results: Results,
    groups: dict[Any, pd.DataFrame],
    reference: Any,
    metrics: Sequence[str],
    *,
    fix: str = SAME_SEEDS,
    paired: bool = False,
) -> pd.DataFrame:
    """One row per group of trials (a configuration's seeds), in the groups' order, tested against
    the `reference` group: test and validation means and sd over seeds; diff and p of the paired
    t-test over users (per-user metrics averaged over seeds), Holm-adjusted over the rows (p_holm);
    Welch's t-test over seeds (p_welch, Holm-adjusted in p_welch_holm); best epoch, the validation
    rise (where a `rise` column is given) and costs. ComparabilityError where the trials rest on
    different data or protocols; SignificanceError where a group faced other negatives than the
    reference (a sampled protocol draws them from the seed; `fix` ends that message) and, with
    `paired`, where a paired test cannot be made (other test users): without it the row has no p."""
    every = pd.concat(list(groups.values()))
    check_comparable(every)
    ref = groups[reference]
    for v, g in groups.items():
        check_negatives(g, ref, str(v), str(reference), fix)
    ref_users = {m: _user_means(results, ref, m) for m in metrics}
    rows = []
    for v, g in groups.items():
        row: dict[str, Any] = {"value": v, "seeds": int(g["seed"].nunique()) if "seed" in g else len(g)}
        for m in metrics:
            row[f"test/{m}"] = float(g[f"test/{m}"].mean())
            row[f"sd/{m}"] = float(g[f"test/{m}"].std(ddof=1)) if len(g) > 1 else np.nan
            row[f"valid/{m}"] = float(g[f"valid/{m}"].mean()) if f"valid/{m}" in g else np.nan
            row[f"diff/{m}"], row[f"p/{m}"], row[f"p_welch/{m}"] = 0.0, np.nan, np.nan
            if v == reference:
                continue
            try:
                c = paired_ttest(_user_means(results, g, m), ref_users[m], str(v), str(reference))
                row[f"diff/{m}"], row[f"p/{m}"] = c.diff, c.p
            except SignificanceError:
                if paired:
                    raise
                row[f"diff/{m}"] = row[f"test/{m}"] - float(ref_users[m].mean())
            try:
                row[f"p_welch/{m}"] = welch_ttest(g[f"test/{m}"], ref[f"test/{m}"], str(v), str(reference)).p
            except SignificanceError:
                pass
        for col in ("best_epoch", "epochs", "rise", *COST_COLUMNS):
            row[col] = float(pd.to_numeric(g[col], errors="coerce").mean()) if col in g else np.nan
        rows.append(row)
    frame = pd.DataFrame(rows)
    for m in metrics:
        frame[f"p_holm/{m}"] = holm(frame[f"p/{m}"].tolist())
        frame[f"p_welch_holm/{m}"] = holm(frame[f"p_welch/{m}"].tolist())
    return frame


def study_table(
    results: Results, study: Study, metrics: Sequence[str] = PAPER_METRICS, window: int = LEVEL_WINDOW
) -> StudyTable:
    """The study's table from the tested trials of its grid; ValueError when the trials hold no value
    of its setting, more than one dataset, or no trial of the reference value. `window`: epochs
    over which each row's validation rise at the end of its runs is measured."""
    column = f"config/{study.key}"
    t = tested(results.trials)
    if column not in t.columns or t[column].dropna().empty:
        raise ValueError(f"no tested trial sets {study.key}: is this the {study.name} study's experiment?")
    datasets = t["dataset"].dropna().unique()
    if len(datasets) != 1:
        raise ValueError(
            f"a study table compares runs of one dataset; these trials hold {', '.join(map(str, datasets))}"
        )
    present = set(t[column].dropna().tolist())
    values = [v for v in study.values if v in present] + sorted(present - set(study.values), key=str)
    if study.reference not in present:
        raise ValueError(f"no tested trial of the reference {study.key}={study.reference!r} to test the others against")
    t = t.assign(rise=_rises(results, t, metrics[-1], window))
    frame = reference_rows(results, {v: t[t[column] == v] for v in values}, study.reference, metrics)
    for m in metrics:
        frame[f"paper/{m}"] = [study.paper.get(v, {}).get(m, np.nan) for v in frame["value"]]
    return StudyTable(study, frame, tuple(metrics), str(datasets[0]), window)


__all__ = ["StudyTable", "reference_rows", "study_table"]
