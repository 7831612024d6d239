"""One report (Markdown + HTML) with every table and figure of a set of experiments."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from glintru.analysis.collect import Results, best_configs, config_columns, config_signature, tested
from glintru.analysis.plots import (
    cost_vs_param,
    importance_plot,
    metric_vs_param,
    optimisation_history,
    pareto_plot,
    save_figure,
    study_plot,
    time_to_quality_plot,
)
from glintru.analysis.stats import TEST_NAMES, SignificanceError, param_importances
from glintru.analysis.tables import (
    ABLATION_LABELS,
    PAPER_METRICS,
    Layout,
    PerformanceTable,
    ablation_table,
    dataset_name,
    efficiency_table,
    frame_layout,
    metric_name,
    model_name,
    performance_table,
    render_html,
    render_markdown,
)
from glintru.analysis.timeline import read_timeline, search_cost_table, time_to_quality

METRIC_SWEEPS = ("config/kernel_size", "config/hidden_size", "config/num_layers")
COST_SWEEPS = ("config/kernel_size", "config/max_length")


@dataclass
class ReportOptions:
    metrics: Sequence[str] = PAPER_METRICS
    select: str | None = None  # None: the column the inputs record they selected on
    test: str = "paired"
    alpha: float = 0.05
    reference: str | None = None
    ablations: Sequence[str] = ()  # besides config/ablation and config/gate_activation, which are automatic
    title: str = "glintru report"
    top: int = 5


@dataclass
class _Doc:
    """Report blocks, rendered once to Markdown and once to HTML."""

    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append((f"h{level}", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, layout: Layout) -> None:
        self.blocks.append(("table", layout))

    def image(self, path: str, alt: str) -> None:
        self.blocks.append(("img", (path, alt)))

    def markdown(self) -> str:
        out = []
        for kind, value in self.blocks:
            if kind.startswith("h"):
                out.append("#" * int(kind[1]) + " " + value)
            elif kind == "p":
                out.append(value)
            elif kind == "table":
                out.append(render_markdown(value).rstrip("\n"))
            else:
                out.append(f"![{value[1]}]({value[0]})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        out = [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
            "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;"
            "text-align:right}th{background:#f3f3f3}tr.rule td{border-top:2px solid #555}"
            "caption{font-weight:bold;text-align:left}.notes{font-size:90%;color:#444}"
            "img{max-width:100%}</style>",
            "</head><body>",
        ]
        for kind, value in self.blocks:
            if kind.startswith("h"):
                out.append(f"<{kind}>{html.escape(value)}</{kind}>")
            elif kind == "p":
                out.append(f"<p>{html.escape(value)}</p>")
            elif kind == "table":
                out.append(render_html(value))
            else:
                out.append(f'<p><img src="{html.escape(value[0])}" alt="{html.escape(value[1])}"></p>')
        out.append("</body></html>")
        return "\n".join(out) + "\n"


def _write_table(table: Any, out: Path, stem: str) -> None:
    (out / f"{stem}.md").write_text(table.to_markdown())
    (out / f"{stem}.tex").write_text(table.to_latex(label=f"tab:{stem}"))
    (out / f"{stem}.csv").write_text(table.to_csv())


def _comparison_layout(table: PerformanceTable, checks: dict[str, PerformanceTable]) -> Layout:
    assert table.test is not None  # comparisons exist only when the table ran a test
    c = table.comparisons.copy()
    frame = pd.DataFrame(
        {
            "dataset": c["dataset"].map(dataset_name),
            "metric": c["metric"].map(metric_name),
            "best": c["best"].map(table.row_names),
            "other": c["other"].map(table.row_names),
            "diff": c["diff"],
            "95% CI": [f"[{lo:.4f}, {hi:.4f}]" for lo, hi in zip(c["ci_low"], c["ci_high"])],
            c["effect_name"].iloc[0]: c["effect"],
            "p": c["p"],
            "p (Holm)": c["p_holm"],
        }
    )
    keys = ["dataset", "metric", "best", "other"]
    for name, check in checks.items():
        if check.comparisons.empty:
            continue
        merged = c[keys].merge(check.comparisons[keys + ["p_holm"]], on=keys, how="left")
        frame[f"p (Holm, {name})"] = merged["p_holm"].to_numpy()
    return frame_layout(frame, caption=f"Comparisons behind the marks ({TEST_NAMES[table.test]}).")


def _performance_section(doc: _Doc, results: Results, opts: ReportOptions, tables_dir: Path) -> None:
    doc.h(2, "Overall performance (Table 2)")
    table = performance_table(
        results,
        opts.metrics,
        select=opts.select,
        test=opts.test,
        alpha=opts.alpha,
        reference=opts.reference,
        strict=False,
    )
    _write_table(table, tables_dir, "table2")
    table.to_long().to_csv(tables_dir / "table2_long.csv", index=False)
    doc.table(table.layout())
    if table.comparisons.empty:
        return
    table.comparisons.to_csv(tables_dir / "table2_comparisons.csv", index=False)
    checks = {}
    for test in ("wilcoxon", "welch"):
        if test == opts.test:
            continue
        check = performance_table(results, opts.metrics, select=opts.select, test=test, alpha=opts.alpha, strict=False)
        if check.note:
            doc.p(f"{TEST_NAMES[test]}: not run ({check.note})")
        else:
            checks[test] = check
            agree = int((check.star.any(axis=0) == table.star.any(axis=0)).sum())
            doc.p(
                f"{TEST_NAMES[test]} as a check: it gives the same significance marks in {agree} of "
                f"{table.star.shape[1]} columns."
            )
    doc.table(_comparison_layout(table, checks))


def _efficiency_section(doc: _Doc, results: Results, opts: ReportOptions, tables_dir: Path) -> None:
    try:
        table = efficiency_table(results, select=opts.select, reference=opts.reference)
    except KeyError:
        return
    doc.h(2, "Efficiency (Table 3)")
    _write_table(table, tables_dir, "table3")
    doc.table(table.layout())


def _ablation_section(doc: _Doc, results: Results, opts: ReportOptions, tables_dir: Path) -> None:
    t = tested(results.trials)
    known = [c for c in ABLATION_LABELS if c in t.columns and t[c].dropna().nunique() >= 2]
    for column in dict.fromkeys([*known, *opts.ablations]):
        doc.h(2, f"Ablation: {column.removeprefix('config/')}")
        try:
            table = ablation_table(
                results, column, opts.metrics, select=opts.select, test=opts.test, alpha=opts.alpha, strict=False
            )
        except (KeyError, ValueError) as e:
            doc.p(f"Not tabulated: {e}")
            continue
        _write_table(table, tables_dir, f"ablation_{column.removeprefix('config/')}")
        doc.table(table.layout())


def _varies(trials: pd.DataFrame, column: str) -> bool:
    if column not in trials.columns:
        return False
    counts = trials.dropna(subset=[column]).groupby("model")[column].nunique()
    return bool((counts >= 2).any())


def _figures_section(doc: _Doc, results: Results, opts: ReportOptions, out: Path) -> None:
    select = opts.select or results.selection_metric()
    trials = results.finished()
    metrics = [f"test/{m}" for m in opts.metrics]
    made = False
    for ds in trials["dataset"].dropna().unique():
        t = trials[trials["dataset"] == ds]
        for sweeps, kind in ((METRIC_SWEEPS, "metric"), (COST_SWEEPS, "cost")):
            for param in sweeps:
                if not _varies(t, param):
                    continue
                name = param.removeprefix("config/")
                try:
                    fig = (
                        metric_vs_param(t, param, metrics, select)
                        if kind == "metric"
                        else cost_vs_param(t, param, select=select)
                    )
                except ValueError:
                    continue
                if not made:
                    doc.h(2, "Parameter analysis")
                    made = True
                stem = f"{kind}_vs_{name}_{_safe(str(ds))}"  # a told-apart name holds spaces and parentheses
                save_figure(fig, out / "figures", stem)
                doc.image(f"figures/{stem}.png", f"{kind} vs {name} on {dataset_name(ds)}")


def _search_section(doc: _Doc, results: Results, opts: ReportOptions, out: Path) -> None:
    select = opts.select or results.selection_metric()
    for name, exp in results.experiments.items():
        t = results.trials[results.trials["experiment"] == name]
        if exp.kind != "experiment" or not _is_search(t):
            continue
        metric = str(exp.meta.get("metric", select))
        if metric not in t.columns:
            metric = select
        doc.h(2, f"Search: {name}")
        finished = int((t["status"] == "TERMINATED").sum())
        doc.p(f"{len(t)} trials, {finished} finished, {len(t) - finished} not finished; objective {metric}.")
        stem = f"history_{_safe(name)}"
        try:
            save_figure(optimisation_history(t, metric), out / "figures", stem)
            doc.image(f"figures/{stem}.png", f"optimisation history of {name}")
        except ValueError as e:
            doc.p(f"No history: {e}")
        _pareto_figure(doc, exp.meta.get("objectives") or [], t, name, out)
        # Importances only mean something within one model's search space on one dataset.
        for (model, ds), group in t.groupby(["model", "dataset"], sort=False):
            try:
                imp, method = param_importances(group, metric)
            except ValueError:
                continue
            label = f"{model_name(model)} on {dataset_name(ds)}"
            stem = f"importance_{_safe(name)}_{_safe(str(model))}_{_safe(str(ds))}"
            save_figure(importance_plot(imp, method, metric), out / "figures", stem)
            doc.image(f"figures/{stem}.png", f"parameter importances of {label}")
            doc.table(frame_layout(imp, caption=f"Parameter importances, {label} ({method})."))
        best = best_configs(t, metric, top=opts.top, tests=opts.metrics)
        if not best.empty:
            best.to_csv(out / "tables" / f"best_configs_{_safe(name)}.csv", index=False)
            best = best.assign(model=best["model"].map(model_name), dataset=best["dataset"].map(dataset_name))
            doc.table(frame_layout(best, caption=f"Best configurations by {metric}."))


def _search_cost_section(doc: _Doc, results: Results, out: Path) -> None:
    """Time to quality of every search, drawn together for searches of one model, dataset and
    objective, with the trial-epochs early stopping saved (glintru.analysis.timeline)."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for name, exp in results.experiments.items():
        if exp.kind != "experiment" or exp.meta.get("sampler") is None:  # grids and runs search nothing
            continue
        key = (str(exp.meta.get("model")), str(exp.meta.get("dataset")), str(exp.meta.get("metric", "valid/ndcg@10")))
        groups.setdefault(key, {})[name] = exp
    for (model, ds, metric), experiments in groups.items():
        table = search_cost_table(experiments, metric)
        if table.empty:
            continue
        label = f"{model_name(model)} on {dataset_name(ds)}"
        doc.h(2, f"Search cost: {label}")
        curves = {
            n: time_to_quality(read_timeline(e, metric), str(e.meta.get("mode", "max")) == "max")
            for n, e in experiments.items()
        }
        stem = f"time_to_quality_{_safe(model)}_{_safe(ds)}"
        save_figure(time_to_quality_plot(curves, metric), out / "figures", stem)
        doc.image(f"figures/{stem}.png", f"time to quality of the searches of {label}")
        table.to_csv(out / "tables" / f"search_cost_{_safe(model)}_{_safe(ds)}.csv", index=False)
        doc.table(
            frame_layout(
                table,
                caption=f"Search cost by {metric}: trial-epochs run against trials x max epochs (saved: the "
                "share early stopping did not run), and the trial-seconds and wall seconds each search took to "
                "come within 1% of the best value any of them found.",
            )
        )


def _study_section(doc: _Doc, results: Results, opts: ReportOptions, out: Path) -> None:
    """A grid over one of the paper's studied settings (glintru.search.studies): its study table,
    tested against the full model's value, with the paper's figures beside it."""
    from glintru.analysis.studies import study_table
    from glintru.search.studies import study_of_grid

    for name, exp in results.experiments.items():
        study = study_of_grid(exp.meta.get("settings", {}).get("grid") or {})
        if exp.kind != "experiment" or study is None:
            continue
        doc.h(2, f"Study: {study.title} ({name})")
        try:
            table = study_table(results.only({"experiment": name}), study, opts.metrics)
        except (ValueError, KeyError, FileNotFoundError) as e:
            doc.p(f"Not tabulated: {e}")
            continue
        stem = f"study_{study.name}_{_safe(name)}"
        (out / "tables" / f"{stem}.json").write_text(json.dumps(table.to_json(), indent=2) + "\n")
        (out / "tables" / f"{stem}.md").write_text(table.to_markdown())
        doc.p(f"The paper: {study.claim}.")
        doc.table(table.layout())
        cost = _study_cost(exp, f"valid/{table.metrics[-1]}")
        if cost:
            (out / "tables" / f"{stem}_cost.json").write_text(json.dumps(cost, indent=2) + "\n")
            doc.p(
                f"Cost: {cost['runs']} runs, {cost['trial_epochs']} epochs in all, {cost['wall_hours']:.2f} hours of "
                f"wall time and {cost['trial_hours']:.2f} trial-hours ({cost['cpu_hours']:.2f} CPU-hours at "
                f"{cost['cpus_per_trial']:g} CPU per run)."
            )
        save_figure(study_plot(table), out / "figures", stem)
        doc.image(f"figures/{stem}.png", f"{study.title} on {table.dataset}")


def _study_cost(exp: Any, metric: str) -> dict[str, Any]:
    """What a study's grid took, from its epoch reports: runs, epochs, wall hours from the first
    run's start to the last report, trial-hours (the runs' own seconds, summed) and CPU-hours (at
    the CPUs each run held). Empty where the grid left no reports."""
    timeline = read_timeline(exp, metric, phase="grid")
    if timeline.empty:
        return {}
    curve = time_to_quality(timeline)
    cpus = float(exp.meta.get("settings", {}).get("cpus_per_trial") or 1.0)
    trial_hours = float(curve["trial_seconds"].iloc[-1]) / 3600
    return {
        "runs": int(timeline["trial_id"].nunique()),
        "trial_epochs": int(timeline.groupby("trial_id")["epoch"].max().sum()),
        "wall_hours": float(curve["wall_seconds"].iloc[-1]) / 3600,
        "trial_hours": trial_hours,
        "cpus_per_trial": cpus,
        "cpu_hours": trial_hours * cpus,
    }


def _pareto_figure(doc: _Doc, objectives: list[dict], trials: pd.DataFrame, name: str, out: Path) -> None:
    """A search over two or more objectives (experiment.json `objectives`): its front on the first two."""
    if len(objectives) < 2:
        return
    y, x = objectives[0], objectives[1]
    stem = f"pareto_{_safe(name)}"
    try:
        fig = pareto_plot(
            trials, y["metric"], x["metric"], maximize_y=y["mode"] == "max", minimize_x=x["mode"] == "min"
        )
    except (ValueError, KeyError) as e:
        doc.p(f"No Pareto front: {e}")
        return
    save_figure(fig, out / "figures", stem)
    doc.image(f"figures/{stem}.png", f"Pareto front of {name}: {y['name']} against {x['name']}")


def _is_search(trials: pd.DataFrame) -> bool:
    """Some model tried several configurations on one dataset (a seeds rerun alone is no search)."""
    if len(trials) < 2:
        return False
    signatures = config_signature(trials)
    return bool((signatures.groupby([trials["model"], trials["dataset"]]).nunique() >= 2).any())


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def write_report(results: Results, out_dir: str | Path, options: ReportOptions | None = None) -> dict[str, Path]:
    """Write report.md, report.html, tables/ and figures/ under out_dir; returns the two report paths."""
    opts = options or ReportOptions()
    opts = replace(opts, select=opts.select or results.selection_metric())
    if opts.test not in TEST_NAMES:
        raise ValueError(f"unknown test {opts.test!r}; choose one of {', '.join(TEST_NAMES)}")
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    doc = _Doc()
    doc.h(1, opts.title)
    overview = pd.DataFrame(
        [
            {
                "experiment": name,
                "kind": exp.kind,
                "path": exp.uri,
                "models": ", ".join(
                    sorted(
                        map(
                            model_name,
                            results.trials.loc[results.trials["experiment"] == name, "model"].dropna().unique(),
                        )
                    )
                ),
                "datasets": ", ".join(
                    sorted(
                        map(str, results.trials.loc[results.trials["experiment"] == name, "dataset"].dropna().unique())
                    )
                ),
                "trials": int((results.trials["experiment"] == name).sum()),
                "finished": int(
                    ((results.trials["experiment"] == name) & (results.trials["status"] == "TERMINATED")).sum()
                ),
            }
            for name, exp in results.experiments.items()
        ]
    )
    doc.table(frame_layout(overview, caption="Inputs."))
    doc.p(
        f"Configurations are chosen on {opts.select}; tables report test metrics. "
        f"Config columns: {', '.join(c.removeprefix('config/') for c in config_columns(results.trials)) or 'none'}."
    )
    _performance_section(doc, results, opts, out / "tables")
    _efficiency_section(doc, results, opts, out / "tables")
    _ablation_section(doc, results, opts, out / "tables")
    _figures_section(doc, results, opts, out)
    _search_section(doc, results, opts, out)
    _search_cost_section(doc, results, out)
    _study_section(doc, results, opts, out)
    paths = {"markdown": out / "report.md", "html": out / "report.html"}
    paths["markdown"].write_text(doc.markdown())
    paths["html"].write_text(doc.html(opts.title))
    (out / "report.json").write_text(
        json.dumps(
            {
                "experiments": list(results.experiments),
                "select": opts.select,
                "test": opts.test,
                "alpha": opts.alpha,
                "metrics": list(opts.metrics),
            },
            indent=2,
        )
    )
    return paths


__all__ = ["ReportOptions", "write_report", "SignificanceError"]
