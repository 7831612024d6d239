"""Which results may be compared: those of the same data (its content fingerprint), split and
evaluation protocol, and, for a test that pairs users, of the same negatives.

Runs and search trials record these beside their metrics (glintru.evaluate.protocol and the
dataset fingerprint); `collect` reads them into BASIS_COLUMNS, names the input behind every row
(SOURCE) and keeps the dataset's own name (DATASET_NAME) while `dataset` tells apart datasets that
share a name. A record without a fingerprint (made before runs recorded one) is compared by its
dataset's name alone, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd

from glintru.analysis.stats import SignificanceError
from glintru.data.fingerprint import short

BASIS_COLUMNS = ("dataset_fingerprint", "split", "eval_mode", "negative_seed")
SOURCE = "source"  # the input (and trial) a row's results come from, as messages name it
DATASET_NAME = "dataset_name"  # the dataset's recorded name; `dataset` may add a fingerprint to it
SAME_SEEDS = "run both sides with the same seeds, or compare over seeds with --test welch"

log = logging.getLogger("glintru")


class ComparabilityError(ValueError):
    """Results resting on different data, splits or protocols were to be compared."""


def _known(value: Any) -> bool:
    """Recorded: neither None nor a missing value of a DataFrame column (NaN, pd.NA)."""
    return value is not None and value is not pd.NA and not (isinstance(value, float) and pd.isna(value))


def inferred_basis(eval_mode: Any, seed: Any) -> dict[str, Any]:
    """The split and negatives of a record made before results recorded them: every earlier
    version split leave-one-out and drew its negatives with the training seed."""
    if not _known(eval_mode):
        return {"split": None, "eval_mode": None, "negative_seed": None}
    from glintru.evaluate import protocol

    basis = protocol(str(eval_mode), int(seed) if _known(seed) else 0)
    if not _known(seed):
        basis["negative_seed"] = None
    return basis


def run_basis(record: dict[str, Any], train_config: dict[str, Any], fingerprint: Any = None) -> dict[str, Any]:
    """BASIS_COLUMNS of a run's metrics.json, or of an evaluation's eval-MODE.json, as written or,
    for an earlier version's record, as that version did it; `fingerprint` stands in for one the
    record lacks (config.json's, for metrics.json)."""
    basis = {"dataset_fingerprint": record.get("dataset_fingerprint", fingerprint)}
    if "split" in record:
        return {**basis, **{k: record.get(k) for k in BASIS_COLUMNS[1:]}}
    eval_mode = record.get("eval_mode", train_config.get("eval_mode"))
    return {**basis, **inferred_basis(eval_mode, record.get("seed", train_config.get("seed")))}


def fill_basis(trials: pd.DataFrame, fingerprint: Any, eval_mode: Any) -> pd.DataFrame:
    """BASIS_COLUMNS of an experiment's trials: their own where trials.parquet has them, else the
    experiment's fingerprint and protocol (experiment.json) with what earlier versions did."""
    t = trials.copy()
    for col in BASIS_COLUMNS:
        if col not in t.columns:
            t[col] = None
        t[col] = t[col].astype(object).where(t[col].notna(), None)
    t["dataset_fingerprint"] = [fp if _known(fp) else fingerprint for fp in t["dataset_fingerprint"]]
    for i in t.index[t["eval_mode"].isna()]:
        for col, value in inferred_basis(eval_mode, t.at[i, "seed"]).items():
            t.at[i, col] = value
    t["negative_seed"] = [int(s) if _known(s) else None for s in t["negative_seed"]]
    return t


def _sources(rows: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(rows[SOURCE]))


def tell_apart(trials: pd.DataFrame, inputs: dict[str, str]) -> pd.DataFrame:
    """Datasets that share a name but not a fingerprint get the fingerprint beside the name in
    `dataset` ("beauty (3f2a1b2c)"), so that every table shows them apart; an input without a
    fingerprint that meets other inputs under one name gets a warning. `inputs` maps the
    `experiment` column to the paths as given."""
    t = trials.copy()
    t[DATASET_NAME] = t["dataset"]
    for name, rows in t.groupby(DATASET_NAME, sort=False):
        if len({fp for fp in rows["dataset_fingerprint"] if _known(fp)}) >= 2:
            t.loc[rows.index, "dataset"] = [
                f"{name} ({short(fp) if _known(fp) else 'fingerprint unknown'})" for fp in rows["dataset_fingerprint"]
            ]
        else:
            warn_unknown(rows, inputs)
    return t


def warn_unknown(rows: pd.DataFrame, inputs: dict[str, str]) -> None:
    """A warning for each input among `rows` (one dataset name) that records no fingerprint, where
    it meets another input."""
    if rows["experiment"].nunique() < 2:
        return
    for exp in dict.fromkeys(rows.loc[~rows["dataset_fingerprint"].map(_known), "experiment"]):
        log.warning(
            "%s records no dataset fingerprint (made before runs recorded one): it is compared "
            "with the other inputs on %s by the dataset's name alone",
            inputs[exp],
            rows[DATASET_NAME].iloc[0],
        )


def _describe(row: pd.Series, field: str) -> str:
    if field == "dataset_fingerprint":
        return f"dataset {row[DATASET_NAME]} fingerprint {short(row['dataset_fingerprint'])}"
    if field == "split":
        return f"split {row['split']}"
    return f"protocol {_protocol(row['eval_mode'], [row['negative_seed']])}"


def _protocol(eval_mode: str, seeds: Sequence[Any]) -> str:
    known = sorted({int(s) for s in seeds if _known(s)})
    if not known:
        return str(eval_mode)
    return f"{eval_mode}, negative seed{'s' if len(known) > 1 else ''} {', '.join(map(str, known))}"


_DIFFERENT = {
    "dataset_fingerprint": "were trained on different data; compare runs of one dataset",
    "split": "were split differently; compare runs of one split",
    "eval_mode": (
        "were evaluated under different protocols; compare runs of one protocol "
        "(glintru evaluate --run RUN --eval-mode MODE evaluates a run under another)"
    ),
}


def check_comparable(trials: pd.DataFrame, fields: Sequence[str] = tuple(_DIFFERENT)) -> None:
    """ComparabilityError unless the rows rest on one dataset, one split and one protocol (values
    a record lacks are unknown and agree with any)."""
    for field in fields:
        why = _DIFFERENT[field]
        rows = trials[trials[field].map(_known)]
        if rows.empty or rows[field].nunique() < 2:
            continue
        first = rows.iloc[0]
        other = rows[rows[field] != first[field]].iloc[0]
        raise ComparabilityError(
            f"{first[SOURCE]} ({_describe(first, field)}) and {other[SOURCE]} ({_describe(other, field)}) {why}"
        )


def check_columns(trials: pd.DataFrame) -> None:
    """check_comparable for each table column (dataset) of the trials."""
    for _, rows in trials.groupby("dataset", sort=False):
        check_comparable(rows)


def check_one_data_per_name(trials: pd.DataFrame) -> None:
    """ComparabilityError where one dataset name stands for different data. A significance table
    refuses it rather than test each dataset apart: the inputs were given to be tested together."""
    for _, rows in trials.groupby(DATASET_NAME, sort=False):
        check_comparable(rows, ["dataset_fingerprint"])


def check_negatives(a: pd.DataFrame, b: pd.DataFrame, a_name: str, b_name: str, fix: str = SAME_SEEDS) -> None:
    """SignificanceError unless two cells' runs, paired over users, faced the same negatives: a
    sampled protocol draws them from the run's seed, so both sides need the same negative seeds.
    `fix` ends the message."""
    seeds_a, seeds_b = _negative_seeds(a), _negative_seeds(b)
    if seeds_a is None or seeds_b is None or seeds_a == seeds_b:
        return
    mode = a["eval_mode"].iloc[0]
    only_a, only_b = seeds_a - seeds_b, seeds_b - seeds_a
    src_a = _run_with_seed(a, only_a) if only_a else _sources(a)[0]
    src_b = _run_with_seed(b, only_b) if only_b else _sources(b)[0]
    raise SignificanceError(
        f"{src_a} ({a_name}: {_protocol(mode, list(seeds_a))}) and {src_b} ({b_name}: "
        f"{_protocol(mode, list(seeds_b))}) were ranked against different negatives; a test over users "
        f"pairs them on the same candidates: {fix}"
    )


def _negative_seeds(rows: pd.DataFrame) -> set[int] | None:
    """The negative seeds of a cell; None where there are none to match (full ranking) or a record
    does not say."""
    seeds = list(rows["negative_seed"])
    if not all(_known(s) for s in seeds):
        return None
    return {int(s) for s in seeds}


def _run_with_seed(rows: pd.DataFrame, seeds: set[int]) -> str:
    hit = rows[rows["negative_seed"].map(lambda s: _known(s) and int(s) in seeds)]
    return str(hit[SOURCE].iloc[0])
