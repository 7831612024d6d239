"""Paper tables: Table 2 (performance with significance marks), Table 3 (efficiency), ablations.

Every table is computed from the configuration chosen by a validation metric per row and dataset
(`select_best`), averaged over its seeds, then laid out once and rendered as Markdown, LaTeX,
CSV or HTML.
"""

from __future__ import annotations

import abc
import csv
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from glintru.analysis.collect import FINISHED, Results, _plain, select_best, tested
from glintru.analysis.comparability import check_columns, check_negatives, check_one_data_per_name
from glintru.analysis.paper import PAPER_METRICS
from glintru.analysis.stats import TEST_NAMES, SignificanceError, compare, comparisons_frame
from glintru.models import MODELS, display_name
from glintru.models.gate_activations import GATE_ACTIVATION_LABELS

# Display names and row order come from the model registry (the paper's order: GLINT-RU last).
MODEL_NAMES = {name: spec.display for name, spec in MODELS.items()}
MODEL_ORDER = list(MODEL_NAMES)
DATASET_NAMES = {"ml-1m": "ML-1M", "beauty": "Amazon Beauty", "video-games": "Amazon Video Games"}
DATASET_ORDER = list(DATASET_NAMES)
METRIC_NAMES = {"recall": "Recall", "hit": "Hit", "mrr": "MRR", "ndcg": "NDCG", "precision": "Precision"}
# Row names, in the paper's order, of the ablation tables over the GLINT-RU search space's labels.
ABLATION_LABELS = {
    "config/ablation": {
        "full": "Default",
        "no_gated_mlp": "w/o Gated MLP (Light GLINT-RU)",
        "no_attention": "w/o Attention",
        "no_gru": "w/o GRU",
        "no_conv": "w/o Temporal Conv1d",
    },
    "config/gate_activation": GATE_ACTIVATION_LABELS | {"silu": f"Default ({GATE_ACTIVATION_LABELS['silu']})"},
}
# (column, header, scale, digits): Table 3 shows milliseconds, seconds per epoch and gigabytes.
COSTS = (
    ("infer_ms_per_batch", "Infer. (ms/batch)", 1.0, 1),
    ("seconds_per_epoch", "Training (s/epoch)", 1.0, 2),
    ("peak_memory_mb", "Memory (GB)", 1 / 1024, 2),
)


def model_name(key: Any) -> str:
    return display_name(str(key))


def dataset_name(key: Any) -> str:
    """'beauty' -> 'Amazon Beauty'; a name told apart by its fingerprint keeps it: 'Amazon Beauty (3f2a1b2c)'."""
    name, sep, rest = str(key).partition(" (")
    return DATASET_NAMES.get(name, name) + sep + rest


def metric_name(key: str) -> str:
    """'ndcg@10' -> 'NDCG@10'; 'test/recall@20' -> 'Recall@20'."""
    key = key.split("/", 1)[-1]
    base, _, k = key.partition("@")
    label = METRIC_NAMES.get(base, base)
    return f"{label}@{k}" if k else label


def value_name(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value.item() if isinstance(value, np.generic) else value)


def ordered(values: Sequence[Any], preferred: Sequence[Any]) -> list[Any]:
    present = list(dict.fromkeys(values))
    first = [v for v in preferred if v in present]
    rest = sorted((v for v in present if v not in first), key=lambda v: (str(type(v)), v))
    return first + rest


def known_keys(given: Sequence[Any], present: Sequence[Any], what: str) -> list[Any]:
    """The trials' own values for keys a user typed, matched as text ("3" finds kernel size 3).

    A key the trials do not hold is an error rather than an empty row or column: it is nearly
    always a typo (--models glinru), and a table with a blank row would hide that.
    """
    by_text = {str(_plain(v)): v for v in present}
    unknown = [str(k) for k in given if str(_plain(k)) not in by_text]
    if unknown:
        raise ValueError(
            f"no {what} {', '.join(map(repr, unknown))} in the trials; they have {', '.join(sorted(by_text)) or 'none'}"
        )
    return [by_text[str(_plain(k))] for k in given]


def _why_untested(trials: pd.DataFrame, select: str) -> str:
    """What became of an input's trials, none of which can be tabulated."""
    status = trials["status"].fillna("unknown")
    parts = [f"{n} {s}" for s, n in status[status != FINISHED].value_counts().items()]
    finished = trials[status == FINISHED]
    if "completed" in finished.columns:
        stopped = int((~finished["completed"].fillna(False).astype(bool)).sum())
        if stopped:
            parts.append(f"{stopped} stopped before the end of training, so never tested")
    if select in trials.columns:
        left = tested(finished)
        unscored = int(left[select].isna().sum())
        if unscored:
            parts.append(f"{unscored} without {select}")
    return f"none of its {len(trials)} trial(s) was trained to its end, tested and scored ({', '.join(parts)})"


def account_for_inputs(
    results: Results, trials: pd.DataFrame, shown: pd.DataFrame, select: str, row: str, rows: Any, datasets: Any
) -> list[str]:
    """Every input behind `trials` is in the table (`shown`), or said not to be: an input that holds
    nothing to tabulate is an error naming it and why; one whose configurations lost the selection
    to another input's gets a note. Inputs left out by the caller's rows or datasets are not noted."""
    notes = []
    present = set(shown["experiment"])
    for name in dict.fromkeys(trials["experiment"]):
        own = trials[trials["experiment"] == name]
        uri = results.experiments[name].uri if name in results.experiments else name
        candidates = tested(own)
        candidates = candidates[candidates[select].notna()] if select in candidates.columns else candidates.iloc[:0]
        if candidates.empty:
            raise ValueError(f"{uri}: nothing to tabulate: {_why_untested(own, select)}")
        wanted = candidates[row].isin(list(rows)) & candidates["dataset"].isin(list(datasets))
        if name not in present and wanted.any():
            notes.append(
                f"Not shown: {uri} (the configuration chosen on {select} for each of its models and "
                f"datasets is another input's)."
            )
    return notes


# ---------------------------------------------------------------------------------------------
# layout and renderers


@dataclass
class Cell:
    text: str
    bold: bool = False
    underline: bool = False
    star: bool = False


@dataclass
class Layout:
    """A rendered-agnostic table: leaf column headers, optional spanning groups, rows of cells."""

    columns: list[str]
    rows: list[list[Cell]]
    groups: list[tuple[str, int]] = field(default_factory=list)  # spans over `columns`, left to right
    rules: set[int] = field(default_factory=set)  # a horizontal rule before these row indices
    n_label_columns: int = 1
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    left: set[int] = field(default_factory=set)  # further left-aligned (text) columns

    def group_of(self) -> list[str]:
        out: list[str] = []
        for label, span in self.groups:
            out += [label] * span
        return out + [""] * (len(self.columns) - len(out))


def render_markdown(layout: Layout) -> str:
    groups = layout.group_of() if layout.groups else [""] * len(layout.columns)
    heads = [f"{g} {c}".strip() for g, c in zip(groups, layout.columns)]
    lines = []
    if layout.caption:
        lines += [f"**{layout.caption}**", ""]
    lines.append("| " + " | ".join(heads) + " |")
    align = [":---" if i < layout.n_label_columns or i in layout.left else "---:" for i in range(len(heads))]
    lines.append("| " + " | ".join(align) + " |")
    for row in layout.rows:
        lines.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
    if layout.notes:
        lines += [""] + list(layout.notes)
    return "\n".join(lines) + "\n"


def _md_cell(c: Cell) -> str:
    text = c.text.replace("|", "\\|")
    if c.bold and text:
        text = f"**{text}**"
    if c.underline and text:
        text = f"<u>{text}</u>"
    return text + ("\\*" if c.star else "")


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def _tex_cell(c: Cell) -> str:
    text = tex_escape(c.text)
    if c.bold and text:
        text = rf"\textbf{{{text}}}"
    if c.underline and text:
        text = rf"\underline{{{text}}}"
    return text + ("$^{*}$" if c.star else "")


def render_latex(layout: Layout, label: str = "") -> str:
    n = len(layout.columns)
    spec = "l" * layout.n_label_columns + "c" * (n - layout.n_label_columns)
    lines = [r"\begin{table}[t]", r"\centering"]
    if layout.caption or layout.notes:
        caption = " ".join([layout.caption] + layout.notes).strip()
        lines.append(rf"\caption{{{tex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    if layout.groups:
        cells, rules, start = [], [], 1
        for text, span in layout.groups:
            if text:
                cells.append(rf"\multicolumn{{{span}}}{{c}}{{{tex_escape(text)}}}" if span > 1 else tex_escape(text))
                rules.append(rf"\cmidrule(lr){{{start}-{start + span - 1}}}")
            else:
                cells += [""] * span
            start += span
        lines.append(" & ".join(cells) + r" \\")
        lines.append(" ".join(rules))
    lines.append(" & ".join(tex_escape(c) for c in layout.columns) + r" \\")
    lines.append(r"\midrule")
    for i, row in enumerate(layout.rows):
        if i in layout.rules:
            lines.append(r"\midrule")
        lines.append(" & ".join(_tex_cell(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def render_csv(layout: Layout) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if layout.groups:
        w.writerow(layout.group_of())
    w.writerow(layout.columns)
    for row in layout.rows:
        w.writerow([c.text + ("*" if c.star else "") for c in row])
    return buf.getvalue()


def render_html(layout: Layout) -> str:
    out = ['<table class="glintru">']
    if layout.caption:
        out.append(f"<caption>{html.escape(layout.caption)}</caption>")
    out.append("<thead>")
    if layout.groups:
        out.append(
            "<tr>"
            + "".join(
                f'<th colspan="{span}">{html.escape(text)}</th>' if span > 1 else f"<th>{html.escape(text)}</th>"
                for text, span in layout.groups
            )
            + "</tr>"
        )
    out.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in layout.columns) + "</tr>")
    out.append("</thead>\n<tbody>")
    for i, row in enumerate(layout.rows):
        cls = ' class="rule"' if i in layout.rules else ""
        cells = []
        for c in row:
            text = html.escape(c.text)
            if c.bold and text:
                text = f"<b>{text}</b>"
            if c.underline and text:
                text = f"<u>{text}</u>"
            cells.append(f"<td>{text}{'<sup>*</sup>' if c.star else ''}</td>")
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    out.append("</tbody>\n</table>")
    if layout.notes:
        out.append('<p class="notes">' + html.escape(" ".join(layout.notes)) + "</p>")
    return "\n".join(out) + "\n"


def json_value(v: Any) -> Any:
    """A table cell as JSON holds it: numpy numbers as Python ones, NaN as None."""
    if isinstance(v, (np.floating, float)):
        return None if np.isnan(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def format_number(v: Any, digits: int, signed: bool = False) -> str:
    """`digits` decimals (with a sign when `signed`); '-' for a missing value."""
    if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
        return "-"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def format_p(v: Any) -> str:
    """A p-value: two significant digits below 0.001, else three decimals; '-' when missing."""
    return "-" if v is None or np.isnan(v) else (f"{v:.2g}" if v < 0.001 else f"{v:.3f}")


def frame_layout(frame: pd.DataFrame, digits: int = 4, caption: str = "") -> Layout:
    """A plain DataFrame as a Layout (floats to `digits` decimals, NaN as '-')."""

    def text(v: Any, integral: bool) -> str:
        if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
            return "-"
        if isinstance(v, (float, np.floating)):
            if integral:
                return str(int(v))
            return f"{v:.{digits}g}" if v != 0 and abs(v) < 10**-digits else f"{v:.{digits}f}"
        return str(v)

    # Integer parameters become float columns when some rows lack them; print them as integers.
    integral = []
    for col in frame.columns:
        vals = frame[col].dropna()
        integral.append(
            pd.api.types.is_float_dtype(frame[col])
            and len(vals) > 0
            and bool(np.all(np.mod(vals.to_numpy(dtype=float), 1) == 0))
            and vals.abs().max() >= 1
        )
    rows = [[Cell(text(v, i)) for v, i in zip(rec, integral)] for rec in frame.itertuples(index=False)]
    left = {i for i, c in enumerate(frame.columns) if not pd.api.types.is_numeric_dtype(frame[c])}
    return Layout(columns=[str(c) for c in frame.columns], rows=rows, caption=caption, left=left)


class _Renderable(abc.ABC):
    """A table that lays itself out once; every output format renders that layout."""

    @abc.abstractmethod
    def layout(self) -> Layout:
        """The table as rows of cells."""

    def to_markdown(self) -> str:
        return render_markdown(self.layout())

    def to_latex(self, label: str = "") -> str:
        return render_latex(self.layout(), label)

    def to_csv(self) -> str:
        return render_csv(self.layout())

    def to_html(self) -> str:
        return render_html(self.layout())

    def render(self, fmt: str) -> str:
        fmts = {
            "md": self.to_markdown,
            "markdown": self.to_markdown,
            "latex": self.to_latex,
            "tex": self.to_latex,
            "csv": self.to_csv,
            "html": self.to_html,
        }
        if fmt not in fmts:
            raise ValueError(f"unknown format {fmt!r}; choose md, latex, csv or html")
        return fmts[fmt]()


def _ranks(values: pd.Series, lower_is_better: bool) -> pd.Series:
    """1 for the best, 2 for the second best, 0 otherwise (NaN never ranked)."""
    v = values.dropna()
    order = v.sort_values(ascending=lower_is_better, kind="stable").index
    ranks = pd.Series(0, index=values.index)
    for r, key in enumerate(order[:2], start=1):
        ranks[key] = r
    return ranks


def _improvement(values: pd.Series, lower_is_better: bool, reference: Any) -> float:
    """Relative improvement (%) of the best over the second best; NaN unless `reference` is best."""
    v = values.dropna().sort_values(ascending=lower_is_better, kind="stable")
    if len(v) < 2 or v.iloc[1] == 0:
        return float("nan")
    if reference is not None and v.index[0] != reference:
        return float("nan")
    best, second = float(v.iloc[0]), float(v.iloc[1])
    gain = (second - best) if lower_is_better else (best - second)
    return gain / abs(second) * 100.0


# ---------------------------------------------------------------------------------------------
# Table 2 and the ablation tables


@dataclass
class PerformanceTable(_Renderable):
    """Means over seeds (rows x (dataset, metric)), ranks, significance marks and the Improv. row."""

    means: pd.DataFrame
    stds: pd.DataFrame
    seeds: pd.DataFrame
    ranks: pd.DataFrame
    star: pd.DataFrame
    improv: pd.Series
    comparisons: pd.DataFrame
    test: str | None
    alpha: float
    row_header: str = "Model"
    row_names: dict[Any, str] = field(default_factory=dict)
    show_improv: bool = True
    note: str = ""
    digits: int = 4
    caption: str = ""
    omitted: list[str] = field(default_factory=list)  # inputs the selection passed over, said so

    def layout(self) -> Layout:
        datasets = list(dict.fromkeys(d for d, _ in self.means.columns))
        single = len(datasets) == 1
        columns = [self.row_header] + [metric_name(m) for _, m in self.means.columns]
        groups = (
            []
            if single
            else [("", 1)] + [(dataset_name(d), sum(1 for dd, _ in self.means.columns if dd == d)) for d in datasets]
        )
        rows = []
        for key in self.means.index:
            row = [Cell(self.row_names.get(key, value_name(key)))]
            for col in self.means.columns:
                v = self.means.at[key, col]
                rank = self.ranks.at[key, col]
                row.append(
                    Cell(
                        "-" if pd.isna(v) else f"{v:.{self.digits}f}",
                        bold=rank == 1,
                        underline=rank == 2,
                        star=bool(self.star.at[key, col]),
                    )
                )
            rows.append(row)
        rules = set()
        if self.show_improv:
            rules.add(len(rows))
            rows.append(
                [Cell("Improv.")]
                + [Cell("-" if pd.isna(self.improv[col]) else f"{self.improv[col]:.2f}%") for col in self.means.columns]
            )
        n_seeds = sorted({int(n) for n in self.seeds.to_numpy().ravel() if n > 0})
        seeds = (f"{n_seeds[0]}" if len(n_seeds) == 1 else f"{n_seeds[0]}-{n_seeds[-1]}") if n_seeds else "0"
        notes = [
            f"Test metrics, mean over {seeds} seed(s) of the configuration chosen on validation. "
            f"Best in bold, second best underlined."
        ]
        if self.test is not None and not self.note and not self.comparisons.empty:
            notes.append(
                f"* the best beats every other row significantly ({TEST_NAMES[self.test]}, two-sided, "
                f"Holm-Bonferroni over the {len(self.comparisons)} comparisons of this table, "
                f"alpha {self.alpha:g})."
            )
        if self.note:
            notes.append(f"Significance not tested: {self.note}")
        if self.show_improv:
            notes.append("Improv.: relative improvement of the best over the second best.")
        notes += self.omitted
        title = f"{self.caption} on {dataset_name(datasets[0])}." if single else f"{self.caption}."
        return Layout(columns=columns, rows=rows, groups=groups, rules=rules, caption=title, notes=notes)

    def to_long(self) -> pd.DataFrame:
        """One row per cell: row, dataset, metric, mean, std, seeds, rank, star, improv."""
        out = []
        for key in self.means.index:
            for col in self.means.columns:
                out.append(
                    {
                        "row": key,
                        "dataset": col[0],
                        "metric": col[1],
                        "mean": self.means.at[key, col],
                        "std": self.stds.at[key, col],
                        "seeds": int(self.seeds.at[key, col]),
                        "rank": int(self.ranks.at[key, col]),
                        "star": bool(self.star.at[key, col]),
                        "improv": self.improv[col] if self.ranks.at[key, col] == 1 else np.nan,
                    }
                )
        return pd.DataFrame(out)


def _group_users(results: Results, trials: pd.DataFrame, metric: str, label: str) -> pd.Series:
    """Per-user metric of one row/dataset cell, averaged over its seeds (the same users each seed)."""
    series = []
    records = trials.to_dict("records")
    for trial in records:
        frame = results.users(trial)
        if metric not in frame.columns:
            raise SignificanceError(f"per-user metrics of trial {trial['trial_id']} have no column {metric!r}")
        series.append(pd.Series(frame[metric].to_numpy(dtype=float), index=frame["user"].to_numpy()))
    users = series[0].index
    for s, trial in zip(series[1:], records[1:]):
        if len(s.index) != len(users) or not s.index.isin(users).all():
            raise SignificanceError(
                f"seeds of {label} were evaluated on different users (trial {trial['trial_id']} has {len(s)} "
                f"users, the first seed {len(users)}); rerun them on the same prepared dataset"
            )
    return pd.concat(series, axis=1).mean(axis=1)


def performance_table(
    results: Results,
    metrics: Sequence[str] = PAPER_METRICS,
    *,
    row: str = "model",
    select: str | None = None,
    test: str | None = "paired",
    alpha: float = 0.05,
    rows: Sequence[Any] | None = None,
    datasets: Sequence[str] | None = None,
    reference: Any = None,
    improv: bool = True,
    row_names: dict[Any, str] | None = None,
    row_header: str | None = None,
    strict: bool = True,
    where: Callable[[pd.DataFrame], pd.Series] | None = None,
    caption: str = "Overall performance comparison",
) -> PerformanceTable:
    """Table 2: rows (models by default) x datasets x metrics, with significance marks.

    A cell is the mean over seeds of `test/<metric>` for the configuration chosen on `select` (by
    default the column the inputs record they selected on: Results.selection_metric).
    Per (dataset, metric) column the best row is compared with every other row by `test`
    ("paired": t-test over users, "welch": over seeds, "wilcoxon": signed-rank over users,
    None: no tests); all comparisons of the table form one Holm-Bonferroni family, and the best
    gets `*` when every one of its comparisons is significant at `alpha` in its favour.
    With strict=False a refused test (one seed, mismatched users) leaves the table unmarked and
    its reason in `note` instead of raising.
    """
    if test is not None and test not in TEST_NAMES:
        raise ValueError(f"unknown test {test!r}; choose one of {', '.join(TEST_NAMES)} or None")
    if not 0.0 < alpha < 1.0:  # alpha=5 would star everything, alpha=0 nothing, both silently
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    select = select or results.selection_metric()
    every = results.trials if where is None else results.trials[where(results.trials)]
    trials = every[every["status"] == FINISHED]
    for m in metrics:
        if f"test/{m}" not in trials.columns:
            raise KeyError(f"no column test/{m} in the trials")
    check_columns(trials)
    if test is not None and strict:
        check_one_data_per_name(trials)
    chosen = select_best(trials, select, by=(row, "dataset"))
    if chosen.empty:
        raise ValueError(f"no finished trials with {select} to tabulate")
    what = "model" if row == "model" else f"{row} value"
    row_keys = (
        known_keys(rows, trials[row].dropna().unique(), what)
        if rows is not None
        else ordered(chosen[row].tolist(), MODEL_ORDER if row == "model" else [])
    )
    ds_keys = (
        known_keys(datasets, trials["dataset"].dropna().unique(), "dataset")
        if datasets is not None
        else ordered(chosen["dataset"].tolist(), DATASET_ORDER)
    )
    if reference is not None:
        if str(_plain(reference)) not in {str(_plain(k)) for k in row_keys}:
            raise ValueError(
                f"reference {reference!r} is not a row of the table; rows: {', '.join(str(k) for k in row_keys)}"
            )
        reference = known_keys([reference], row_keys, what)[0]
    shown = chosen[chosen[row].isin(row_keys) & chosen["dataset"].isin(ds_keys)]
    omitted = account_for_inputs(results, every, shown, select, row, row_keys, ds_keys)
    columns = pd.MultiIndex.from_tuples([(d, m) for d in ds_keys for m in metrics], names=["dataset", "metric"])
    means = pd.DataFrame(np.nan, index=row_keys, columns=columns)
    stds, seeds = means.copy(), pd.DataFrame(0, index=row_keys, columns=columns)
    cells: dict[tuple[Any, str], pd.DataFrame] = {}
    for (key, ds), group in chosen.groupby([row, "dataset"], sort=False):
        if key not in means.index or ds not in ds_keys:
            continue
        cells[(key, ds)] = group
        for m in metrics:
            vals = group[f"test/{m}"].astype(float)
            means.at[key, (ds, m)] = vals.mean()
            stds.at[key, (ds, m)] = vals.std(ddof=1) if len(vals) > 1 else np.nan
            seeds.at[key, (ds, m)] = int(vals.notna().sum())
    ranks = pd.DataFrame({col: _ranks(means[col], False) for col in columns}, index=row_keys)
    ranks.columns = columns
    names = {k: (model_name(k) if row == "model" else value_name(k)) for k in row_keys}
    names.update(row_names or {})
    star = pd.DataFrame(False, index=row_keys, columns=columns)
    note, comps = "", pd.DataFrame()
    if test is not None:
        try:
            comps = _compare_best(results, cells, means, metrics, ds_keys, test, names)
        except SignificanceError as e:
            if strict:
                raise
            note = str(e)
        if not comps.empty:
            for (ds, m), block in comps.groupby(["dataset", "metric"], sort=False):
                if ((block["p_holm"] < alpha) & (block["diff"] > 0)).all():
                    star.at[block["best"].iloc[0], (ds, m)] = True
    improvement = pd.Series({col: _improvement(means[col], False, reference) for col in columns})
    improvement.index = columns
    header = row_header or ("Model" if row == "model" else row.removeprefix("config/"))
    return PerformanceTable(
        means,
        stds,
        seeds,
        ranks,
        star,
        improvement,
        comps,
        test,
        alpha,
        header,
        names,
        improv,
        note,
        caption=caption,
        omitted=omitted,
    )


def _compare_best(
    results: Results,
    cells: dict,
    means: pd.DataFrame,
    metrics: Sequence[str],
    datasets: Sequence[str],
    test: str,
    names: dict[Any, str],
) -> pd.DataFrame:
    comparisons, keys = [], []
    vectors: dict[tuple[Any, str, str], pd.Series] = {}

    def users_of(key: Any, ds: str, m: str, label: str) -> pd.Series:
        if (key, ds, m) not in vectors:
            vectors[(key, ds, m)] = _group_users(results, cells[(key, ds)], m, label)
        return vectors[(key, ds, m)]

    for ds in datasets:
        for m in metrics:
            col = means[(ds, m)].dropna()
            if len(col) < 2:
                continue
            best = col.sort_values(ascending=False, kind="stable").index[0]
            for other in col.index:
                if other == best:
                    continue
                a_name, b_name = f"{names[best]} on {dataset_name(ds)}", f"{names[other]} on {dataset_name(ds)}"
                if test == "welch":
                    a = cells[(best, ds)][f"test/{m}"].to_numpy(dtype=float)
                    b = cells[(other, ds)][f"test/{m}"].to_numpy(dtype=float)
                else:
                    a = users_of(best, ds, m, a_name)
                    b = users_of(other, ds, m, b_name)
                    check_negatives(cells[(best, ds)], cells[(other, ds)], a_name, b_name)
                comparisons.append(compare(test, a, b, a_name, b_name))
                keys.append({"dataset": ds, "metric": m, "best": best, "other": other})
    return comparisons_frame(comparisons, keys)


def ablation_table(
    results: Results,
    by: str,
    metrics: Sequence[str] = PAPER_METRICS,
    *,
    model: str | None = None,
    labels: dict[Any, str] | None = None,
    order: Sequence[Any] | None = None,
    caption: str = "Ablation study",
    **kwargs: Any,
) -> PerformanceTable:
    """Tables 4 and 6: one row per value of `by` (a config column or `experiment`) vs the metrics.

    `labels` maps values to row names (e.g. {"no_gru": "w/o GRU"}); the search's `config/ablation`
    and `config/gate_activation` get the paper's names and order by default, other values are
    shown as `param=value`. Significance marks follow Table 2's rule, with no Improv. row.
    """
    if by not in results.trials.columns:
        raise KeyError(f"no column {by!r} in the trials; config columns are named config/<param>")
    where = None
    if model is not None:

        def where(t: pd.DataFrame) -> pd.Series:
            return t["model"] == model

    param = by.removeprefix("config/")
    known = ABLATION_LABELS.get(by, {})
    t = tested(results.trials)
    if model is not None:
        t = t[t["model"] == model]
    present = t[by].dropna().unique().tolist()
    names = {v: known.get(v, f"{param}={value_name(v)}" if by != "experiment" else str(v)) for v in present}
    names.update(labels or {})
    rows = list(order) if order is not None else ordered(present, list(known))
    return performance_table(
        results,
        metrics,
        row=by,
        rows=rows,
        improv=False,
        row_names=names,
        row_header="Variant",
        where=where,
        caption=caption,
        **kwargs,
    )


# ---------------------------------------------------------------------------------------------
# Table 3


@dataclass
class EfficiencyTable(_Renderable):
    """Per dataset: inference ms per batch, training seconds per epoch, peak memory (lower is better)."""

    values: pd.DataFrame  # index (dataset, row), columns COSTS keys
    ranks: pd.DataFrame
    improv: pd.DataFrame  # index dataset, columns COSTS keys
    devices: list[str]
    row_names: dict[Any, str] = field(default_factory=dict)
    caption: str = "Efficiency comparison."
    omitted: list[str] = field(default_factory=list)  # inputs the selection passed over, said so

    def layout(self) -> Layout:
        costs = [c for c in COSTS if c[0] in self.values.columns]
        columns = ["Dataset", "Model"] + [c[1] for c in costs]
        rows: list[list[Cell]] = []
        rules: set[int] = set()
        for ds in dict.fromkeys(d for d, _ in self.values.index):
            if rows:
                rules.add(len(rows))
            block = self.values.loc[ds]
            for i, key in enumerate(block.index):
                row = [Cell(dataset_name(ds) if i == 0 else ""), Cell(self.row_names.get(key, model_name(key)))]
                for col, _, scale, digits in costs:
                    v = block.at[key, col]
                    rank = self.ranks.at[(ds, key), col]
                    row.append(
                        Cell("-" if pd.isna(v) else f"{v * scale:.{digits}f}", bold=rank == 1, underline=rank == 2)
                    )
                rows.append(row)
            rows.append(
                [Cell(""), Cell("Improv.")]
                + [
                    Cell("-" if pd.isna(self.improv.at[ds, c[0]]) else f"{self.improv.at[ds, c[0]]:.2f}%")
                    for c in costs
                ]
            )
        notes = [
            "Mean over seeds of the configuration chosen on validation; best (lowest) in bold, "
            "second underlined; Improv.: relative saving of the best over the second best."
        ]
        if self.devices:
            notes.append(f"Measured on: {', '.join(self.devices)}.")
        notes += self.omitted
        return Layout(columns=columns, rows=rows, rules=rules, n_label_columns=2, caption=self.caption, notes=notes)


def efficiency_table(
    results: Results,
    *,
    row: str = "model",
    select: str | None = None,
    rows: Sequence[Any] | None = None,
    datasets: Sequence[str] | None = None,
    reference: Any = None,
    row_names: dict[Any, str] | None = None,
) -> EfficiencyTable:
    """Table 3 from the efficiency columns of the chosen configurations (mean over seeds).

    With `reference` (e.g. "glintru") an Improv. cell is shown only where that row is the best,
    as in the paper; without it, wherever a best and second best exist. `select` as in
    performance_table.
    """
    select = select or results.selection_metric()
    check_columns(results.finished())
    chosen = select_best(results.finished(), select, by=(row, "dataset"))
    cols = [c[0] for c in COSTS if c[0] in chosen.columns]
    if not cols:
        raise KeyError(f"the trials hold none of the efficiency columns {', '.join(c[0] for c in COSTS)}")
    row_keys = list(rows) if rows is not None else ordered(chosen[row].tolist(), MODEL_ORDER if row == "model" else [])
    ds_keys = list(datasets) if datasets is not None else ordered(chosen["dataset"].tolist(), DATASET_ORDER)
    chosen = chosen[chosen[row].isin(row_keys) & chosen["dataset"].isin(ds_keys)]
    omitted = account_for_inputs(results, results.trials, chosen, select, row, row_keys, ds_keys)
    values = chosen.groupby(["dataset", row], sort=False)[cols].mean()
    values = values.reindex(
        pd.MultiIndex.from_tuples(
            [(d, k) for d in ds_keys for k in row_keys if (d, k) in values.index], names=["dataset", row]
        )
    )
    # Zero memory means "not measured" (e.g. CPU runs), not "best".
    if "peak_memory_mb" in values.columns:
        values["peak_memory_mb"] = values["peak_memory_mb"].where(values["peak_memory_mb"] > 0)
    ranks = pd.DataFrame(0, index=values.index, columns=cols)
    improv = pd.DataFrame(np.nan, index=ds_keys, columns=cols)
    for ds in ds_keys:
        if ds not in values.index.get_level_values(0):
            continue
        for c in cols:
            block = values.loc[ds, c]
            r = _ranks(block, True)
            for key in block.index:
                ranks.at[(ds, key), c] = r[key]
            improv.at[ds, c] = _improvement(block, True, reference)
    devices = sorted(str(d) for d in chosen["device"].dropna().unique()) if "device" in chosen.columns else []
    names = {k: model_name(k) for k in row_keys}
    names.update(row_names or {})
    return EfficiencyTable(values, ranks, improv, devices, names, omitted=omitted)
