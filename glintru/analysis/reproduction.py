"""Table 2 beside the paper: `glintru train` run directories (any seeds, any models) on one dataset
-> mean and spread over seeds under the run's own protocol (e.g. pop100) and, where `glintru evaluate
--eval-mode full` was run, under full ranking; the paper's numbers; paired t-tests of the reference
model against each baseline over the same test users; epochs to convergence and seconds per epoch.
Runs of one model with `variant=reference` (GLINT-RU, LinRec) form a row of their own,
"GLINT-RU (reference)", named `glintru:reference` for --reference; so do runs of one model and
variant whose model settings differ, named by the settings that differ ("GLINT-RU (num_layers=2)",
`glintru:num_layers=2`).

    glintru reproduce runs/beauty/* --paper beauty --reference glintru --out docs/beauty.md

Writes Markdown (stdout or --out) and, with --json, the same numbers as JSON. `--curve 1,5,10` adds
each row's validation NDCG@10 at those epochs (mean over seeds): runs given the same epoch budget
compared as they learn.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from glintru.analysis.cli import ANALYSIS_ERRORS, WARNING_FORMAT, check_file_outputs, write_output
from glintru.analysis.collect import parse_json_object
from glintru.analysis.comparability import (
    DATASET_NAME,
    SOURCE,
    check_comparable,
    check_negatives,
    run_basis,
    warn_unknown,
)
from glintru.analysis.paper import PAPER_METRICS, TABLE2
from glintru.analysis.stats import holm, paired_ttest
from glintru.command import OK, run_command
from glintru.models import MODELS, display_name

METRICS = PAPER_METRICS
REFERENCE_VARIANT = "reference"
DESCRIPTION = __doc__.split("\n\n")[0] if __doc__ else ""


def arm(config: dict[str, Any]) -> str:
    """The row a run belongs to: its model, or `model:reference` for the reference variant."""
    variant = config.get("model_config", {}).get("variant")
    return f"{config['model']}:{variant}" if variant == REFERENCE_VARIANT else config["model"]


def label_arms(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Split a model's runs into rows by the model settings that differ between them (seeds are
    never a model setting): each such run's key gains `name=value` for every differing setting."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(r["model"], []).append(r)
    for key, group in groups.items():
        configs = [r["model_config"] for r in group]
        names = sorted({k for c in configs for k in c})
        differ = [k for k in names if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
        if not differ:
            continue
        for r in group:
            parts = ",".join(f"{k}={r['model_config'].get(k)}" for k in differ)
            r["model"] = f"{key},{parts}" if ":" in key else f"{key}:{parts}"
    return runs


def arm_name(key: str) -> str:
    """The display name of a row: "GLINT-RU", "GLINT-RU (reference)"."""
    model, _, variant = key.partition(":")
    return display_name(model) + (f" ({variant.replace(',', ', ')})" if variant else "")


def _arm_order(key: str) -> tuple[int, str]:
    model = key.partition(":")[0]
    return (list(MODELS).index(model) if model in MODELS else len(MODELS), key)


def _read(path: Path, objects: tuple[str, ...]) -> dict[str, Any]:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise ValueError(f"{path}: {e.strerror or e}") from None
    return parse_json_object(text, str(path), objects)


def _read_users(path: Path) -> pd.DataFrame:
    """A run's per-user metrics (test_users.parquet and the like), indexed by user."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not readable as per-user metrics ({e})") from None
    missing = [c for c in ("user", *METRICS) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} column; per-user metrics have user, {', '.join(METRICS)}")
    return frame.set_index("user")


def read_run(path: Path) -> dict[str, Any]:
    """One run's model, seed, metrics (own protocol and full ranking) and per-user frames."""
    config = _read(path / "config.json", ("train_config",))
    metrics = _read(path / "metrics.json", ("valid", "test"))
    lacking = [k for k in ("best_epoch", "epochs", "seconds_per_epoch") if not isinstance(metrics.get(k), (int, float))]
    if lacking:
        what = ", ".join(f"{k!r}" for k in lacking)
        raise ValueError(f"{path / 'metrics.json'}: no number for {what}; it is not a file of a finished glintru run")
    if not isinstance(config["train_config"].get("seed"), int):
        raise ValueError(f"{path / 'config.json'}: no train_config seed; it is not a file of a glintru run")
    dataset = config.get("dataset", {})

    def basis(source: str, record: dict[str, Any], fingerprint: Any) -> dict[str, Any]:
        own = {SOURCE: source, "experiment": str(path), DATASET_NAME: dataset.get("name")}
        return {**own, **run_basis(record, config["train_config"], fingerprint)}

    run = {
        "path": str(path),
        "model": arm(config),
        "model_config": config.get("model_config", {}),
        "seed": config["train_config"]["seed"],
        "basis": basis(str(path), metrics, dataset.get("fingerprint")),
        "test": metrics["test"],
        "valid": metrics["valid"],
        "best_epoch": metrics["best_epoch"],
        "epochs": metrics["epochs"],
        "seconds_per_epoch": metrics["seconds_per_epoch"],
        "curve": {int(h["epoch"]): h["valid"]["ndcg@10"] for h in metrics.get("history", []) if "valid" in h},
        "users": _read_users(path / "test_users.parquet"),
        "dataset_stats": dataset.get("stats") or {},
    }
    run["protocol"] = run["basis"]["eval_mode"]
    full = path / "eval-full.json"
    if full.exists():
        evaluation = _read(full, ("test",))
        run["full"] = evaluation["test"]
        # an evaluation that records no fingerprint (an earlier version's) may have read other data
        run["full_basis"] = basis(str(full), evaluation, None)
        run["full_users"] = _read_users(path / "eval-full-test_users.parquet")
    return run


# The paper's Table 2 is measured with 100 popularity-sampled negatives (docs/REPRODUCTION.md)
PAPER_PROTOCOLS = ("pop100", "pop100-recbole")


def check_paper_basis(runs: list[dict[str, Any]], paper: str) -> None:
    """ValueError unless every run was measured as the paper's Table 2 was for `paper`: under a
    pop100 protocol, on data with that dataset's counts in the paper's Table 1 (its registry entry)."""
    from glintru.data.registry import get_dataset

    counts = get_dataset(paper).counts
    if counts is None:  # every dataset of Table 2 has its Table 1 counts registered
        raise ValueError(f"--paper {paper}: the registry holds no counts of {paper} to check the runs against")
    expected = {"users": counts.users, "items": counts.items, "interactions": counts.interactions}
    for r in runs:
        if r["protocol"] not in PAPER_PROTOCOLS:
            raise ValueError(
                f"--paper {paper}: the paper's figures are measured under pop100, and {r['path']} under "
                f"{r['protocol']}; leave out --paper, or give runs evaluated under pop100"
            )
        stats = r["dataset_stats"]
        got = {k: stats.get(k) for k in expected}
        if got != expected:
            shown = ", ".join(f"{got[k]:,} {k}" if isinstance(got[k], int) else f"no {k} count" for k in expected)
            want = ", ".join(f"{v:,} {k}" for k, v in expected.items())
            raise ValueError(
                f"--paper {paper}: {r['path']} was trained on {r['basis'][DATASET_NAME]!r} ({shown}), not the "
                f"paper's {paper} ({want}, its Table 1); leave out --paper"
            )


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise(runs: list[dict[str, Any]], reference: str | None, alpha: float = 0.05) -> dict[str, Any]:
    models = sorted({r["model"] for r in runs}, key=_arm_order)
    own = pd.DataFrame([r["basis"] for r in runs])
    full = pd.DataFrame([r["full_basis"] for r in runs if "full_basis" in r])
    check_comparable(own)
    if not full.empty:
        check_comparable(full)
    check_comparable(pd.concat([own, full], ignore_index=True), ["dataset_fingerprint"])
    warn_unknown(own, {p: p for p in own["experiment"]})
    protocols = {r["protocol"] for r in runs}
    by_model: dict[str, Any] = {}
    for m in models:
        rs = [r for r in runs if r["model"] == m]
        row: dict[str, Any] = {"seeds": sorted(r["seed"] for r in rs), "runs": [r["path"] for r in rs]}
        for split in ("test", "valid", "full"):
            if all(split in r for r in rs):
                row[split] = {k: _mean_sd([r[split][k] for r in rs]) for k in METRICS}
        row["best_epoch"] = _mean_sd([r["best_epoch"] for r in rs])
        row["epochs"] = _mean_sd([r["epochs"] for r in rs])
        row["seconds_per_epoch"] = _mean_sd([r["seconds_per_epoch"] for r in rs])
        # validation NDCG@10 by epoch, over the epochs every seed reached
        epochs = set.intersection(*(set(r["curve"]) for r in rs))
        row["curve"] = {e: float(np.mean([r["curve"][e] for r in rs])) for e in sorted(epochs)}
        by_model[m] = row
    tests: list[dict[str, Any]] = []
    if reference in by_model:
        ref = [r for r in runs if r["model"] == reference]
        for frame in ("users", "full_users"):
            if not all(frame in r for r in runs):
                continue
            # each user's metric averaged over the model's seeds, then paired over users
            ref_users = sum(r[frame] for r in ref) / len(ref)
            for m in models:
                if m == reference:
                    continue
                other = [r for r in runs if r["model"] == m]
                if frame == "users":  # full ranking draws no negatives
                    check_negatives(
                        pd.DataFrame([r["basis"] for r in ref]),
                        pd.DataFrame([r["basis"] for r in other]),
                        arm_name(reference),
                        arm_name(m),
                        "give both rows the same seeds, or leave out the runs of the seeds one row lacks",
                    )
                other_users = sum(r[frame] for r in other) / len(other)
                for k in METRICS:
                    c = paired_ttest(ref_users[k], other_users[k], reference, m)
                    tests.append(
                        {
                            "protocol": "full" if frame == "full_users" else next(iter(protocols)),
                            "model": m,
                            "metric": k,
                            "diff": c.diff,
                            "p": c.p,
                            "n_users": c.n_a,
                        }
                    )
        for proto in {t["protocol"] for t in tests}:
            group = [t for t in tests if t["protocol"] == proto]
            for t, p_adj in zip(group, holm([t["p"] for t in group])):
                t["p_holm"] = float(p_adj)
                t["significant"] = bool(p_adj < alpha and t["diff"] > 0)
    return {"protocol": next(iter(protocols)), "reference": reference, "models": by_model, "tests": tests}


def _cell(ms: tuple[float, float] | None, mark: str = "") -> str:
    if ms is None:
        return "-"
    mean, sd = ms
    return f"{mean:.4f}{mark} ± {sd:.4f}" if sd else f"{mean:.4f}{mark}"


def render_curve(summary: dict[str, Any], epochs: list[int]) -> str:
    """Validation NDCG@10 at the given epochs, a row per model ("-" where a run stopped before)."""
    head = ["Model"] + [f"epoch {e}" for e in epochs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, row in summary["models"].items():
        cells = [f"{row['curve'][e]:.4f}" if e in row["curve"] else "-" for e in epochs]
        lines.append("| " + " | ".join([arm_name(m), *cells]) + " |")
    return "\n".join(lines) + "\n"


def render(summary: dict[str, Any], paper: str | None) -> str:
    proto = summary["protocol"]
    ref = summary["reference"]
    sig = {(t["protocol"], t["model"], t["metric"]) for t in summary["tests"] if t["significant"]}
    beaten = {(p, k) for p, _, k in sig}
    n_base = {p: len({t["model"] for t in summary["tests"] if t["protocol"] == p}) for p in (proto, "full")}

    def mark(model: str, p: str, k: str) -> str:
        # "*": the reference beats every baseline on this metric (paired t, Holm, p < alpha)
        wins = sum((p, m, k) in sig for m in summary["models"] if m != ref)
        return "*" if model == ref and (p, k) in beaten and wins == n_base[p] else ""

    head = ["Model", "seeds"] + [f"{k} ({proto})" for k in METRICS] + [f"valid ndcg@10 ({proto})"]
    if paper:
        head += [f"paper {k}" for k in METRICS]
    # the own protocol's columns are the full-ranking ones when the runs were evaluated under full ranking
    full_columns = proto != "full"
    head += [f"{k} (full)" for k in METRICS if full_columns] + ["best epoch", "s/epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, row in summary["models"].items():
        cells = [arm_name(m), str(len(row["seeds"]))]
        cells += [_cell(row.get("test", {}).get(k), mark(m, proto, k)) for k in METRICS]
        cells.append(_cell(row.get("valid", {}).get("ndcg@10")))
        if paper:
            pt = TABLE2.get(paper, {}).get(m.partition(":")[0])
            cells += [f"{pt[k]:.4f}" if pt else "-" for k in METRICS]
        cells += [_cell(row.get("full", {}).get(k), mark(m, "full", k)) for k in METRICS if full_columns]
        be, ep = row["best_epoch"], row["seconds_per_epoch"]
        cells += [f"{be[0]:.0f}" + (f" ± {be[1]:.0f}" if be[1] else ""), f"{ep[0]:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if summary["tests"]:
        lines += [
            "",
            f"Paired t-tests over test users, {arm_name(ref)} minus each baseline (per-user metrics "
            "averaged over seeds; p Holm-adjusted within each protocol):",
            "",
            "| protocol | baseline | metric | diff | p | p (Holm) |",
            "|---|---|---|---|---|---|",
        ]
        for t in summary["tests"]:
            lines.append(
                f"| {t['protocol']} | {arm_name(t['model'])} | {t['metric']} | {t['diff']:+.4f} | "
                f"{t['p']:.2g} | {t['p_holm']:.2g} |"
            )
    return "\n".join(lines) + "\n"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `glintru reproduce` (and `python analysis/reproduction.py`)."""
    p.add_argument("runs", nargs="+", type=Path, help="glintru train run directories")
    p.add_argument("--paper", choices=sorted(TABLE2), help="add the paper's Table 2 numbers for this dataset")
    p.add_argument(
        "--reference",
        default="glintru",
        help="row tested against every other: a model, or model:reference (default glintru)",
    )
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--curve", metavar="EPOCHS", help="add validation NDCG@10 at these epochs, e.g. 1,4,8,16")
    p.add_argument("--out", type=Path, help="write the Markdown here instead of stdout")
    p.add_argument("--json", type=Path, help="also write the numbers as JSON here")


def _curve_epochs(text: str | None) -> list[int]:
    try:
        curve = [int(e) for e in text.split(",")] if text else []
        if any(e < 1 for e in curve):
            raise ValueError
    except ValueError:
        raise ValueError(f"--curve takes epochs from 1 up, comma-separated (e.g. 1,4,8); got {text!r}") from None
    return curve


def reproduce(args: argparse.Namespace) -> int:
    """The command's work on parsed flags: read the runs, write the table (and the JSON)."""
    curve = _curve_epochs(args.curve)
    check_file_outputs({"--out": args.out, "--json": args.json}, args.runs, example="beauty.md")
    missing = [str(r) for r in args.runs if not (r / "metrics.json").exists()]
    if missing:
        raise FileNotFoundError(f"not finished run directories (no metrics.json): {', '.join(missing)}")
    runs = label_arms([read_run(r) for r in args.runs])
    if args.paper:
        check_paper_basis(runs, args.paper)
    summary = summarise(runs, args.reference, args.alpha)
    text = render(summary, args.paper)
    if curve:
        text += "\nValidation NDCG@10 by epoch (mean over seeds):\n\n" + render_curve(summary, curve)
    if args.out:
        write_output(args.out, "--out", text)
    else:
        print(text, end="")
    if args.json:
        write_output(args.json, "--json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return OK


def main(argv: list[str] | None = None, *, command: str | None = None) -> int:
    """`command`: how the user runs it (`glintru reproduce`; None: the script's name)."""
    args = build_parser(command).parse_args(argv)
    return run_command(lambda: reproduce(args), errors=ANALYSIS_ERRORS, level=logging.WARNING, fmt=WARNING_FORMAT)
