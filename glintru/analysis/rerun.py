"""`glintru compare` (also `python analysis/compare.py`): what a search found, against a hand-set
preset. The seed reruns of the search's best configurations (its `seeds` phase: tune/search.py
--seeds S --top-k K) beside one preset configuration trained at the same seeds, at the same epoch
budget, on the same data and protocol; each tested against the preset by a paired t-test over test
users (per-user metrics averaged over seeds) and Welch's t-test over seeds, both Holm-adjusted over
the found configurations.

    glintru compare results/beauty-tpe results/beauty-preset --json docs/studies/search-vs-preset.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from glintru.analysis.cli import ANALYSIS_ERRORS, WARNING_FORMAT, check_file_outputs, write_output
from glintru.analysis.collect import Results, collect, config_columns, config_signature, experiment_paths, tested
from glintru.analysis.comparability import SOURCE
from glintru.analysis.tables import PAPER_METRICS, format_number, format_p, json_value, metric_name
from glintru.command import OK, run_command

DESCRIPTION = (
    "The seed reruns of a search's best configurations beside a preset trained at the same seeds: mean "
    "and sd over seeds, paired t-tests over users and Welch's t-tests over seeds against the preset "
    "(Holm over the configurations)."
)
PRESET = "preset"
RERUN_PHASE = "seeds"  # the phase of tune/search.py --seeds that reruns the best configurations
# the goal a found configuration is held to: its test metric this much above the preset's, significant
GOAL_GAIN = 0.02
# how to give the preset and the reruns the same negatives (a sampled protocol draws them from the seed)
SAME_SEEDS = (
    "train the preset at the seeds of the search's reruns (its --seeds); a found configuration short of a seed "
    "lost that rerun"
)
BUDGET_FIELDS = {"experiment": "settings.max_epochs of experiment.json", "run": "train_config.epochs of config.json"}

log = logging.getLogger("glintru")


@dataclass
class PresetComparison:
    frame: pd.DataFrame  # the preset first, then the found configurations by validation
    metrics: tuple[str, ...]
    dataset: str
    search: str
    preset: str
    max_epochs: int | None
    alpha: float = 0.05
    unrecorded: tuple[str, ...] = ()  # the inputs that record no epoch budget

    @property
    def main(self) -> str:
        return self.metrics[-1]

    def verdict(self) -> str:
        """The search's choice against the goal: GOAL_GAIN above the preset's test metric with
        Holm-adjusted paired p < alpha. The choice is found 1, the best by validation: picking the
        best test metric would select on the test set."""
        m = self.main
        best = self.frame[self.frame["value"] != PRESET].iloc[0]
        met = best[f"gain/{m}"] >= GOAL_GAIN and best[f"p_holm/{m}"] < self.alpha
        return (
            f"the search's choice ({best['value']}, the best validation {metric_name(m)} over its seeds): test "
            f"{metric_name(m)} {best[f'test/{m}']:.4f} against the "
            f"preset's {self.frame.iloc[0][f'test/{m}']:.4f}, {best[f'gain/{m}']:+.2%} (paired p, Holm = "
            f"{format_p(best[f'p_holm/{m}'])}; Welch over seeds p, Holm = {format_p(best[f'p_welch_holm/{m}'])}): the goal of "
            f"{GOAL_GAIN:+.0%} at p < {self.alpha} is {'met' if met else 'not met'}"
        )

    def to_markdown(self) -> str:
        m = self.main
        head = ["configuration", "seeds"] + [f"test {metric_name(x)}" for x in self.metrics]
        head += [f"gain {metric_name(m)}", "p paired (Holm)", "p Welch (Holm)", f"valid {metric_name(m)}"]
        head += ["best epoch", "s/epoch", "settings"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.frame.to_dict("records"):
            cells = [str(row["value"]), str(row["seeds"])]
            for x in self.metrics:
                mark = "*" if row[f"p_holm/{x}"] < self.alpha else ""
                sd = "" if np.isnan(row[f"sd/{x}"]) else f" ± {row[f'sd/{x}']:.4f}"
                cells.append(f"{row[f'test/{x}']:.4f}{mark}{sd}")
            cells += [f"{row[f'gain/{m}']:+.2%}", format_p(row[f"p_holm/{m}"]), format_p(row[f"p_welch_holm/{m}"])]
            cells += [
                format_number(row[f"valid/{m}"], 4),
                format_number(row["best_epoch"], 1),
                format_number(row["seconds_per_epoch"], 1),
            ]
            cells.append(row["settings"])
            lines.append("| " + " | ".join(cells) + " |")
        budget = f"up to {self.max_epochs} epochs each" if self.max_epochs else "the epochs each run recorded"
        if self.max_epochs and self.unrecorded:
            budget += f" ({', '.join(self.unrecorded)}: budget not recorded)"
        caption = (
            f"{self.search} against {self.preset} on {self.dataset}, {budget}: test metrics, mean ± sd over seeds; "
            f"* differs from the preset (paired t-test over users, per-user metrics averaged over seeds, Holm over "
            f"the found configurations, p < {self.alpha}). Gain: relative to the preset's mean."
        )
        return caption + "\n\n" + "\n".join(lines) + "\n\n" + self.verdict() + ".\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "search": self.search,
            "preset": self.preset,
            "dataset": self.dataset,
            "max_epochs": self.max_epochs,
            "budget_unrecorded": list(self.unrecorded),
            "alpha": self.alpha,
            "goal_gain": GOAL_GAIN,
            "verdict": self.verdict(),
            "rows": [{k: json_value(v) for k, v in row.items()} for row in self.frame.to_dict("records")],
        }


def _max_epochs(results: Results, name: str) -> int | None:
    exp = results.experiments[name]
    if exp.kind == "experiment":
        value = exp.meta.get("settings", {}).get("max_epochs")
    else:
        value = exp.meta.get("config", {}).get("train_config", {}).get("epochs")
    return int(value) if value is not None else None


def _settings(trials: pd.DataFrame) -> str:
    first = trials.iloc[0]
    items = [f"{c.removeprefix('config/')}={first[c]}" for c in config_columns(trials) if pd.notna(first[c])]
    return ", ".join(items)


def preset_comparison(
    results: Results,
    search: str,
    preset: str | Sequence[str],
    metrics: Sequence[str] = PAPER_METRICS,
    alpha: float = 0.05,
) -> PresetComparison:
    """The table of `search`'s seed reruns against the trials of `preset` (names of inputs in
    `results`: an experiment, or the run directories of the preset's seeds). ValueError where the
    search has no reruns, the preset holds more than one configuration, or the two trained under
    different epoch budgets; ComparabilityError and SignificanceError (both ValueErrors) where their
    data, protocol or negatives differ."""
    from glintru.analysis.studies import reference_rows  # reads the study registry, under glintru.search

    presets = [preset] if isinstance(preset, str) else list(preset)
    for name in (search, *presets):
        if name not in results.experiments:
            raise ValueError(f"no input named {name!r}; the inputs are {', '.join(results.experiments)}")
    if search in presets:
        raise ValueError("the search and the preset are one input; give the preset's own experiment or runs")
    t = tested(results.trials)
    phase = t["phase"] if "phase" in t.columns else pd.Series(None, index=t.index, dtype=object)
    found = t[(t["experiment"] == search) & (phase == RERUN_PHASE)]
    if found.empty:
        raise ValueError(
            f"{results.experiments[search].uri} holds no tested seed reruns (phase {RERUN_PHASE!r}); run the search "
            "with --seeds 0,1,2 --top-k 2 to rerun its best configurations"
        )
    preset_name = ", ".join(results.experiments[p].uri for p in presets)
    base = t[t["experiment"].isin(presets)]
    if base.empty:
        raise ValueError(f"{preset_name} holds no tested trial to compare against")
    base_configs = config_signature(base).nunique()
    if base_configs > 1:
        raise ValueError(f"{preset_name} holds {base_configs} configurations; the preset is one configuration")
    budgets = {name: _max_epochs(results, name) for name in (search, *presets)}
    known = {name: b for name, b in budgets.items() if b is not None}
    if len(set(known.values())) > 1:
        listed = "; ".join(f"{results.experiments[n].uri}: {b}" for n, b in known.items())
        if len({known[p] for p in presets if p in known}) > 1:
            raise ValueError(
                f"the preset's runs trained under different epoch budgets ({listed}); train every seed of the "
                "preset at one budget, the search's --max-epochs"
            )
        raise ValueError(
            f"the search's reruns and the preset trained under different epoch budgets ({listed}); compare "
            "configurations at one budget (train the preset with the search's --max-epochs)"
        )
    max_epochs = next(iter(known.values()), None)
    unrecorded = [name for name, b in budgets.items() if b is None]
    if max_epochs is not None:
        _check_unrecorded_budgets(results, pd.concat([found, base]), unrecorded, max_epochs)
    signatures = config_signature(found)
    select = f"valid/{metrics[-1]}"
    order = found.assign(_config=signatures).groupby("_config", sort=False)[select].mean().sort_values(ascending=False)
    groups: dict[Any, pd.DataFrame] = {PRESET: base}
    settings = {PRESET: _settings(base)}
    for rank, config in enumerate(order.index, 1):
        label = f"found {rank}"  # rank by mean validation over the seeds
        groups[label] = found[signatures == config]
        settings[label] = _settings(groups[label])
    for label, g in groups.items():
        _check_seeds_once(g, "the preset" if label == PRESET else label)
    # refuses other data, protocols, negatives or test users
    frame = reference_rows(results, groups, PRESET, metrics, fix=SAME_SEEDS, paired=True)
    for m in metrics:
        frame[f"gain/{m}"] = frame[f"test/{m}"] / frame.iloc[0][f"test/{m}"] - 1.0
    frame["settings"] = [settings[v] for v in frame["value"]]
    search_name = results.experiments[search].uri
    missing = tuple(results.experiments[n].uri for n in unrecorded) if max_epochs is not None else ()
    return PresetComparison(
        frame, tuple(metrics), str(found["dataset"].iloc[0]), search_name, preset_name, max_epochs, alpha, missing
    )


def _check_unrecorded_budgets(results: Results, trials: pd.DataFrame, unrecorded: list[str], budget: int) -> None:
    """An input that records no epoch budget is compared with the others' `budget` after a warning,
    unless its trials ran more epochs than that (then it trained under another budget)."""
    others = ", ".join(e.uri for n, e in results.experiments.items() if n not in unrecorded)
    for name in unrecorded:
        uri = results.experiments[name].uri
        ran = trials.loc[trials["experiment"] == name, "epochs"] if "epochs" in trials else pd.Series(dtype=float)
        most = pd.to_numeric(ran, errors="coerce").max()
        if most > budget:
            raise ValueError(
                f"{uri} records no epoch budget, but its trials ran {int(most)} epochs, more than the {budget} of "
                f"{others}; compare configurations at one budget (train the preset with the search's --max-epochs)"
            )
        log.warning(
            "%s records no epoch budget (%s): it is compared with the %d epochs of %s unchecked",
            uri,
            BUDGET_FIELDS[results.experiments[name].kind],
            budget,
            others,
        )


def _check_seeds_once(trials: pd.DataFrame, label: str) -> None:
    """Each seed once per configuration: the same seed twice (one preset given as two experiments)
    is no second sample, and would shrink the spread over seeds."""
    seeds = trials["seed"].dropna()
    twice = seeds[seeds.duplicated(keep=False)]
    if not twice.empty:
        first = twice.iloc[0]
        sources = trials.loc[twice.index[twice == first], SOURCE].tolist()
        raise ValueError(
            f"{label} holds seed {int(first)} twice ({sources[0]} and {sources[1]}); give each seed of a configuration "
            "once"
        )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `glintru compare` (and `python analysis/compare.py`)."""
    p.add_argument("search", help="the search experiment, with seed reruns (tune/search.py --seeds ... --top-k K)")
    p.add_argument("preset", nargs="+", help="the preset's experiment dir, or its glintru train run dirs")
    p.add_argument(
        "--metric",
        action="append",
        metavar="NAME",
        help=f"test metric(s), the last one decides (default {','.join(PAPER_METRICS)})",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm-Bonferroni")
    p.add_argument("--out", type=Path, help="write the Markdown here instead of stdout")
    p.add_argument("--json", type=Path, help="also write the numbers as JSON here")


def compare(args: argparse.Namespace) -> int:
    if not 0 < args.alpha < 1:
        raise ValueError(f"--alpha must be between 0 and 1, got {args.alpha}")
    metrics = [m.strip() for item in (args.metric or [",".join(PAPER_METRICS)]) for m in item.split(",") if m.strip()]
    if not metrics:
        raise ValueError(f"--metric names no metric; e.g. --metric {','.join(PAPER_METRICS)}")
    paths = experiment_paths(",".join([args.search, *args.preset]))
    # one directory under two spellings (a trailing slash, a link) would count its seeds twice
    keys = [p.rstrip("/") if "://" in p else os.path.realpath(p) for p in paths]
    again = [p for i, p in enumerate(paths) if keys[i] in keys[:i]]
    if again:
        raise ValueError(f"{again[0]} is given twice (the preset is another input than the search, each once)")
    check_file_outputs({"--out": args.out, "--json": args.json}, paths, example="compare.md")
    results = collect(paths)
    names = list(results.experiments)
    search, presets = names[0], names[1:]
    unknown = [m for m in metrics if f"test/{m}" not in results.trials.columns]
    if unknown:
        held = ", ".join(c.removeprefix("test/") for c in results.trials.columns if c.startswith("test/"))
        raise KeyError(f"unknown metric(s) {', '.join(unknown)}: the trials hold test metrics {held}")
    table = preset_comparison(results, search, presets, metrics, args.alpha)
    text = table.to_markdown()
    if args.out:
        write_output(args.out, "--out", text)
    else:
        print(text, end="")
    if args.json:
        write_output(args.json, "--json", json.dumps(table.to_json(), indent=2, sort_keys=True) + "\n")
    return OK


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(p)
    return p


def main(argv: list[str] | None = None, *, command: str | None = None) -> int:
    args = build_parser(command).parse_args(argv)
    return run_command(lambda: compare(args), errors=ANALYSIS_ERRORS, level=logging.WARNING, fmt=WARNING_FORMAT)


__all__ = ["GOAL_GAIN", "PresetComparison", "main", "preset_comparison"]
