"""The experiment directory a search leaves for analysis: experiment.json, trials.parquet and the
per-user test metrics of every finished trial (users/<trial_id>.parquet).

    EXP_DIR/experiment.json          name, space, model, dataset, eval_mode, metric, settings, phases
    EXP_DIR/trials.parquet           one row per trial (schema below)
    EXP_DIR/users/<trial_id>.parquet user (int32) + one float column per test metric
    EXP_DIR/tune/<phase>/            Ray Tune's experiment (TensorBoard events, progress.csv) and,
                                     under <trial_id>/, a single-worker trial's checkpoints
    EXP_DIR/train/<trial_id>/        a DDP trial's Ray Train checkpoints; failed.json of a trial
                                     that failed in user code
    The last checkpoint of a finished trial is its run directory (metrics.json, config.json,
    model.pt, ...).

trials.parquet columns: trial_id, phase, status (TERMINATED | ERROR | RUNNING | PENDING | PAUSED),
error, completed (trained to its end and tested, i.e. not stopped by ASHA), pareto (finished and
not dominated on the search's objectives; with one objective, the best trial), model, dataset,
dataset_fingerprint, split, eval_mode, negative_seed (what the trial's results rest on besides the
model: glintru.evaluate.protocol), seed, source_trial, best_epoch, epochs, config/<param>, valid/<metric> (at the best epoch),
test/<metric>, stopped_early (by patience), seconds_per_epoch, samples_per_second, infer_ms_per_batch, peak_memory_mb,
num_parameters, setup_seconds (trial start to the training call: worker_start_seconds to start
Ray Train's workers, 0 for a single-worker trial, plus data_fetch_seconds), report_seconds (per epoch report, checkpoint
included), data_zero_copy, num_failures, node, host, device, run_dir.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from glintru.outputs import MARKER_FILE, SEARCH, marker_text
from glintru.search.objectives import DEFAULT_SELECTION, test_metric
from glintru.search.spaces import META_KEYS

EXPERIMENT_FILE = "experiment.json"
TRIALS_FILE = "trials.parquet"
USERS_DIR = "users"
FINAL_FILE = "metrics.json"  # in a trial's last checkpoint only: the run finished and was tested
FINAL_KEY = "final"  # true in the last report of a finished run (Tune reserves "done")
USERS_FILE = "test_users.parquet"
VARIANT_KEY = "variant"  # a whole config chosen by a phase (the seeds phase reruns configs)
SELECTION_METRIC = DEFAULT_SELECTION.metric
# The data, split and protocol of a trial's results, as its run's metrics.json records them.
EVALUATION_COLUMNS = ("dataset_fingerprint", "split", "eval_mode", "negative_seed")
RUN_FIELDS = (
    "best_epoch",
    "epochs",
    "stopped_early",
    "seconds_per_epoch",
    "samples_per_second",
    "infer_ms_per_batch",
    "peak_memory_mb",
    "num_parameters",
)
REPORT_FIELDS = (
    "setup_seconds",
    "worker_start_seconds",
    "data_fetch_seconds",
    "report_seconds",
    "data_zero_copy",
    "node",
    "host",
    "device",
)
HEAD_COLUMNS = (
    "trial_id",
    "phase",
    "status",
    "error",
    "completed",
    "model",
    "dataset",
    *EVALUATION_COLUMNS,
    "seed",
    "source_trial",
    "best_epoch",
    "epochs",
)
TAIL_COLUMNS = (
    "stopped_early",
    "seconds_per_epoch",
    "samples_per_second",
    "infer_ms_per_batch",
    "peak_memory_mb",
    "num_parameters",
    *REPORT_FIELDS[:5],
    "num_failures",
    *REPORT_FIELDS[5:],
    "run_dir",
)


# -- storage: local paths and URIs (s3://, gs://) alike -------------------------------------------


def is_uri(location: str) -> bool:
    return "://" in str(location)


def normalize_location(location: str | os.PathLike) -> str:
    """An absolute local path, or the URI unchanged."""
    loc = str(location)
    return loc.rstrip("/") if is_uri(loc) else str(Path(loc).expanduser().resolve())


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem holding `location` and the path within it."""
    if is_uri(location):
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), normalize_location(location)


def exists(location: str) -> bool:
    fs, path = filesystem(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(location: str) -> bytes:
    fs, path = filesystem(location)
    with fs.open_input_stream(path) as f:
        return f.readall()


def write_bytes(location: str, data: bytes) -> None:
    """Write a whole file; locally through a temporary sibling and a rename, so never half-written."""
    fs, path = filesystem(location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        with fs.open_output_stream(path) as f:
            f.write(data)


def list_dirs(location: str) -> list[str]:
    fs, path = filesystem(location)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path))
    prefix = location.rstrip("/")
    return sorted(join(prefix, i.base_name) for i in infos if i.type == pafs.FileType.Directory)


# -- experiment.json ------------------------------------------------------------------------------


def write_experiment(exp_dir: str, info: dict[str, Any]) -> None:
    marker = join(exp_dir, MARKER_FILE)
    if not exists(marker):  # written with the directory's first file: what kind of output it is
        write_bytes(marker, marker_text(SEARCH).encode())
    write_bytes(
        join(exp_dir, EXPERIMENT_FILE), (json.dumps(info, indent=2, sort_keys=True, default=str) + "\n").encode()
    )


def read_experiment(exp_dir: str) -> dict[str, Any]:
    return json.loads(read_bytes(join(exp_dir, EXPERIMENT_FILE)).decode())


# -- one row per trial ----------------------------------------------------------------------------


@dataclass
class TrialRecord:
    """What the search knows of one trial, from Tune's state and the trial's last checkpoint."""

    trial_id: str
    phase: str
    status: str
    config: dict[str, Any]
    last_result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    num_failures: int = 0
    run_metrics: dict[str, Any] | None = None  # metrics.json of a finished run
    run_dir: str | None = None  # its final checkpoint


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """A trial config with a phase's `variant` (a whole chosen config) merged in."""
    out = dict(config.get(VARIANT_KEY) or {})
    out.update({k: v for k, v in config.items() if k != VARIANT_KEY})
    return out


def error_reason(text: str | None) -> str | None:
    """The one-line reason out of a trial's error text (a traceback ending in the exception)."""
    if not text:
        return None
    match = re.search(r"TrialError: (.+)", text)
    if match:
        return match.group(1).strip()
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line):
            return line
    return lines[-1] if lines else None


def evaluation_of(rec: TrialRecord, seed: int, fingerprint: str | None, eval_mode: str | None) -> dict[str, Any]:
    """The trial's EVALUATION_COLUMNS: what its run recorded, else what the search set (a trial
    stopped before its end has no run record, and its validation ran under the same protocol)."""
    from glintru.evaluate import protocol

    own: dict[str, Any] = dict.fromkeys(EVALUATION_COLUMNS)
    own["dataset_fingerprint"] = fingerprint
    if eval_mode is not None:
        own.update(protocol(eval_mode, seed))
    run = rec.run_metrics or {}
    recorded = {k: run[k] for k in EVALUATION_COLUMNS if k in run}
    return {**own, **recorded}


def build_row(
    rec: TrialRecord,
    *,
    model: str,
    dataset: str,
    default_seed: int,
    fingerprint: str | None = None,
    eval_mode: str | None = None,
) -> dict[str, Any]:
    """One trials.parquet row; `fingerprint` and `eval_mode` are the search's dataset fingerprint
    and protocol."""
    config = flat_config(rec.config)
    last = rec.last_result or {}
    seed = int(config.get("seed", default_seed))
    row: dict[str, Any] = {
        "trial_id": rec.trial_id,
        "phase": rec.phase,
        "status": rec.status,
        "error": rec.error,
        "completed": rec.run_metrics is not None,
        "model": model,
        "dataset": dataset,
        **evaluation_of(rec, seed, fingerprint, eval_mode),
        "seed": seed,
        "source_trial": config.get("source_trial"),
        "num_failures": int(rec.num_failures),
        "run_dir": rec.run_dir,
    }
    for key, value in sorted(config.items()):
        if key != "seed" and key not in META_KEYS:
            row[f"config/{key}"] = value
    if rec.run_metrics is not None:
        m = rec.run_metrics
        row.update({f"valid/{k}": float(v) for k, v in m["valid"].items()})
        row.update({f"test/{k}": float(v) for k, v in m["test"].items()})
        row.update({k: m[k] for k in RUN_FIELDS if k in m})
    else:
        # stopped (ASHA), failed or unfinished: the best validation seen so far, no test
        row.update({k: float(v) for k, v in last.items() if k.startswith("valid/")})
        row["best_epoch"] = last.get("best_epoch")
        row["epochs"] = last.get("epoch")
    for key in REPORT_FIELDS:
        if key in last:
            row[key] = last[key]
    return row


def trials_frame(rows: Iterable[dict[str, Any]], metric: str = SELECTION_METRIC) -> pd.DataFrame:
    """Rows in the trials.parquet column order; every trial once (the last record wins). The
    selecting `metric` and its test column are there even when no trial reported them."""
    by_id: dict[str, dict[str, Any]] = {}
    for row in rows:
        by_id[row["trial_id"]] = row
    df = pd.DataFrame(list(by_id.values()))
    for col in HEAD_COLUMNS + (metric, test_metric(metric) or metric):
        if col not in df.columns:
            df[col] = None
    config_cols = sorted(c for c in df.columns if c.startswith("config/"))
    valid_cols = sorted(c for c in df.columns if c.startswith("valid/"))
    test_cols = sorted(c for c in df.columns if c.startswith("test/"))
    tail = [c for c in TAIL_COLUMNS if c in df.columns]
    known = set(HEAD_COLUMNS) | set(config_cols) | set(valid_cols) | set(test_cols) | set(tail)
    rest = sorted(c for c in df.columns if c not in known)
    df = df[list(HEAD_COLUMNS) + config_cols + valid_cols + test_cols + tail + rest]
    for col in valid_cols + test_cols:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in ("best_epoch", "epochs", "seed", "negative_seed", "num_failures"):
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    df["completed"] = df["completed"].fillna(False).astype(bool)
    return df.reset_index(drop=True)


def _to_table(df: pd.DataFrame) -> pa.Table:
    # object columns holding mixed values (e.g. a config that is a bool in some trials and missing
    # in others) are stored as they are when Arrow can type them, else as strings
    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        fixed = df.copy()
        for col in fixed.columns:
            if fixed[col].dtype == object:
                try:
                    pa.array(fixed[col])
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    fixed[col] = fixed[col].map(lambda v: None if v is None else str(v))
        return pa.Table.from_pandas(fixed, preserve_index=False)


def write_results(
    exp_dir: str,
    records: list[TrialRecord],
    *,
    model: str,
    dataset: str,
    default_seed: int,
    objectives: Sequence[Any] = (),
    fingerprint: str | None = None,
    eval_mode: str | None = None,
) -> pd.DataFrame:
    """Write trials.parquet and users/<trial_id>.parquet of every finished trial; return the rows.
    `objectives` (objectives.Objective) mark the Pareto-optimal finished trials (column `pareto`);
    `fingerprint` and `eval_mode` are the search's, for trials without a run record of their own."""
    from glintru.search.objectives import pareto_mask

    objectives = list(objectives) or [DEFAULT_SELECTION]
    df = trials_frame(
        (
            build_row(
                r, model=model, dataset=dataset, default_seed=default_seed, fingerprint=fingerprint, eval_mode=eval_mode
            )
            for r in records
        ),
        objectives[0].metric,
    )
    mask = pareto_mask(df, objectives)
    df.insert(df.columns.get_loc("completed") + 1, "pareto", mask.astype(bool))
    for rec in records:
        if rec.run_metrics is not None and rec.run_dir and exists(join(rec.run_dir, USERS_FILE)):
            write_bytes(join(exp_dir, USERS_DIR, f"{rec.trial_id}.parquet"), read_bytes(join(rec.run_dir, USERS_FILE)))
    sink = pa.BufferOutputStream()
    pq.write_table(_to_table(df), sink)
    write_bytes(join(exp_dir, TRIALS_FILE), sink.getvalue().to_pybytes())
    return df


def read_trials(exp_dir: str) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(read_bytes(join(exp_dir, TRIALS_FILE)))).to_pandas()


# -- reading a trial's checkpoints ----------------------------------------------------------------


def final_run(
    train_storage: str, trial_id: str, last_result: dict[str, Any], checkpoint_dirs: Iterable[str] = ()
) -> tuple[str | None, dict | None]:
    """(run dir, metrics.json) of a trial whose final report reached Tune, else (None, None).

    `checkpoint_dirs`: the checkpoint Tune recorded with the last report (a single-worker trial's),
    searched first. A trial that Tune stops (ASHA) never has its final report seen, whatever its
    workers left behind: the row must say what the search saw and told Optuna (the best
    validation up to the stop, no test).
    """
    if not last_result.get(FINAL_KEY):
        return None, None
    candidates = list(checkpoint_dirs)
    reported = last_result.get("checkpoint_path")  # a DDP trial's, forwarded from Ray Train
    if reported:
        candidates.append(reported if is_uri(train_storage) or is_uri(reported) else normalize_location(reported))
    # a retried trial may report its final checkpoint again; the newest one wins
    candidates += list(reversed(list_dirs(join(train_storage, trial_id))))
    for cand in candidates:
        metrics_path = join(cand, FINAL_FILE)
        if exists(metrics_path):
            return cand, json.loads(read_bytes(metrics_path).decode())
    return None, None


def best_rows(df: pd.DataFrame, k: int, metric: str = SELECTION_METRIC, mode: str = "max") -> pd.DataFrame:
    """The k best trials that finished training (not stopped by ASHA, which Tune also calls
    TERMINATED) by a validation metric (never by test)."""
    if not metric.startswith("valid/"):
        raise ValueError(f"selection must use a validation metric, got {metric!r}")
    ok = df[(df["status"] == "TERMINATED") & df["completed"].astype(bool) & df[metric].notna()]
    return ok.sort_values([metric, "trial_id"], ascending=[mode == "min", True]).head(k)
