"""The experiment directory's schema: trials.parquet rows, users/<trial_id>.parquet, experiment.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from glintru.search import results
from glintru.search.results import TrialRecord

METRICS = ("recall@10", "ndcg@10", "mrr@10")

TRACE = """Traceback (most recent call last):
  File "trainable.py", line 90, in run_trial
    raise TrialError(reason, details) from None
glintru.search.trainable.TrialError: FloatingPointError: training loss became nan at epoch 2, step 0

Traceback (most recent call last):
FloatingPointError: training loss became nan at epoch 2, step 0 (lr=1e9)
"""


def _run_dir(tmp_path, name: str, n_users: int = 5) -> tuple[str, dict]:
    run = tmp_path / "train" / name / "checkpoint_000"
    run.mkdir(parents=True)
    users = pd.DataFrame(
        {"user": np.arange(n_users, dtype=np.int32), **{m: np.linspace(0, 1, n_users) for m in METRICS}}
    )
    users.to_parquet(run / results.USERS_FILE, index=False)
    metrics = {
        "valid": {m: 0.3 for m in METRICS},
        "test": {m: 0.25 for m in METRICS},
        "best_epoch": 4,
        "epochs": 6,
        "stopped_early": True,
        "seconds_per_epoch": 1.5,
        "samples_per_second": 900.0,
        "infer_ms_per_batch": 3.0,
        "peak_memory_mb": 120.0,
        "num_parameters": 5000,
        "history": [],
    }
    (run / results.FINAL_FILE).write_text(json.dumps(metrics))
    return str(run), metrics


def _records(tmp_path) -> list[TrialRecord]:
    run_dir, metrics = _run_dir(tmp_path, "t1")
    report = {
        "node": "n1",
        "host": "h",
        "device": "cpu",
        "setup_seconds": 2.0,
        "report_seconds": 0.01,
        "data_zero_copy": True,
    }
    return [
        TrialRecord(
            "t1",
            "search",
            "TERMINATED",
            {"lr": 1e-3, "ablation": "full"},
            {"final": True, "epoch": 6, **report},
            run_metrics=metrics,
            run_dir=run_dir,
        ),
        TrialRecord(
            "t2",
            "search",
            "TERMINATED",
            {"lr": 1e-2, "ablation": "no_gru"},
            {"final": False, "epoch": 1, "best_epoch": 1, "valid/ndcg@10": 0.1, "valid/recall@10": 0.2, **report},
        ),
        TrialRecord(
            "t3",
            "search",
            "ERROR",
            {"lr": 1e9, "ablation": "full"},
            {},
            error=results.error_reason(TRACE),
            num_failures=3,
        ),
        TrialRecord(
            "t4",
            "seeds",
            "TERMINATED",
            {"variant": {"lr": 1e-3, "ablation": "full", "seed": 2, "source_trial": "t1"}},
            {"final": True, **report},
            run_metrics=metrics,
            run_dir=run_dir,
        ),
    ]


def test_trials_parquet_schema(tmp_path):
    exp = str(tmp_path / "exp")
    results.write_results(exp, _records(tmp_path), model="glintru", dataset="synthetic", default_seed=0)
    df = results.read_trials(exp)
    for col in (
        "trial_id",
        "status",
        "config/lr",
        "config/ablation",
        "valid/ndcg@10",
        "test/ndcg@10",
        "best_epoch",
        "seed",
        "model",
        "dataset",
        "error",
        "completed",
        "node",
        "device",
        "run_dir",
        "seconds_per_epoch",
        "infer_ms_per_batch",
        "peak_memory_mb",
        "phase",
        "source_trial",
    ):
        assert col in df.columns, col
    assert list(df["trial_id"]) == ["t1", "t2", "t3", "t4"] and df["trial_id"].is_unique
    assert list(df.columns[:4]) == ["trial_id", "phase", "status", "error"]
    assert df["valid/ndcg@10"].dtype == np.float64 and df["test/ndcg@10"].dtype == np.float64
    t1, t2, t3, t4 = (df.iloc[i] for i in range(4))
    assert t1["completed"] and t1["test/ndcg@10"] == 0.25 and t1["valid/ndcg@10"] == 0.3 and t1["best_epoch"] == 4
    assert not t2["completed"] and np.isnan(t2["test/ndcg@10"]) and t2["valid/ndcg@10"] == 0.1
    assert t2["epochs"] == 1 and t2["data_zero_copy"]
    assert t3["status"] == "ERROR" and t3["num_failures"] == 3
    assert t3["error"] == "FloatingPointError: training loss became nan at epoch 2, step 0"
    # a seeds-phase trial: its chosen config flattened, its seed and source kept apart from config/
    assert t4["seed"] == 2 and t4["source_trial"] == "t1" and t4["config/lr"] == 1e-3
    assert "config/seed" not in df.columns and "config/source_trial" not in df.columns
    assert (df["model"] == "glintru").all() and (df["dataset"] == "synthetic").all()


def test_per_user_files_only_for_finished_trials(tmp_path):
    exp = tmp_path / "exp"
    records = _records(tmp_path)
    results.write_results(str(exp), records, model="glintru", dataset="synthetic", default_seed=0)
    assert sorted(p.name for p in (exp / "users").iterdir()) == ["t1.parquet", "t4.parquet"]
    users = pd.read_parquet(exp / "users" / "t1.parquet")
    assert users["user"].dtype == np.int32 and list(users.columns) == ["user", *METRICS]
    assert not list(exp.glob("**/*.tmp-*")), "temporary files left behind"


def test_one_row_per_trial_when_a_trial_is_seen_twice(tmp_path):
    records = _records(tmp_path)
    again = TrialRecord(
        "t2",
        "search",
        "TERMINATED",
        {"lr": 1e-2, "ablation": "no_gru"},
        {"epoch": 3, "best_epoch": 2, "valid/ndcg@10": 0.15},
    )
    df = results.trials_frame(results.build_row(r, model="m", dataset="d", default_seed=0) for r in records + [again])
    assert len(df) == 4 and df.loc[df["trial_id"] == "t2", "valid/ndcg@10"].item() == 0.15


def test_selection_uses_validation_only(tmp_path):
    df = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c"],
            "status": ["TERMINATED", "TERMINATED", "ERROR"],
            "completed": [True, True, False],
            "valid/ndcg@10": [0.2, 0.3, 0.9],
            "test/ndcg@10": [0.9, 0.1, 0.9],
        }
    )
    assert list(results.best_rows(df, 2)["trial_id"]) == ["b", "a"]
    with pytest.raises(ValueError, match="validation metric"):
        results.best_rows(df, 1, metric="test/ndcg@10")


def test_error_reason():
    assert results.error_reason(None) is None
    assert results.error_reason("Traceback...\nValueError: bad thing\n") == "ValueError: bad thing"
    assert (
        results.error_reason(
            "ray.exceptions.RayTaskError(TrialError): ray::run_trial() TrialError: ActorDiedError: node lost\n"
        )
        == "ActorDiedError: node lost"
    )


def test_experiment_json_round_trip(tmp_path):
    exp = str(tmp_path / "exp")
    info = {
        "name": "x",
        "space": "glintru",
        "model": "glintru",
        "dataset": "d",
        "eval_mode": "full",
        "metric": "valid/ndcg@10",
        "phases": {"search": "done"},
    }
    results.write_experiment(exp, info)
    assert results.read_experiment(exp) == info
    assert results.final_run(str(tmp_path / "train"), "absent", {}) == (None, None)


def test_a_run_is_final_only_if_its_final_report_reached_tune(tmp_path):
    run_dir, metrics = _run_dir(tmp_path, "t9")
    train = str(tmp_path / "train")
    assert results.final_run(train, "t9", {"final": True, "epoch": 6}) == (run_dir, metrics)
    # stopped by ASHA after epoch 1 while its workers went on to finish: the row keeps what Tune saw
    stopped = {"final": False, "epoch": 1, "best_epoch": 1, "valid/ndcg@10": 0.1}
    assert results.final_run(train, "t9", stopped) == (None, None)
    row = results.build_row(
        TrialRecord("t9", "search", "TERMINATED", {"lr": 1e-3}, stopped), model="m", dataset="d", default_seed=0
    )
    assert row["completed"] is False and row["valid/ndcg@10"] == 0.1 and row["epochs"] == 1
    assert "test/ndcg@10" not in row


def test_every_row_carries_the_data_split_and_protocol(tmp_path):
    records = _records(tmp_path)
    sampled = {"dataset_fingerprint": "ab" * 32, "split": "leave-one-out", "eval_mode": "pop100", "negative_seed": 0}
    records[0].run_metrics = {**records[0].run_metrics, **sampled}
    df = results.write_results(
        str(tmp_path / "exp"),
        records,
        model="glintru",
        dataset="synthetic",
        default_seed=0,
        fingerprint="ab" * 32,
        eval_mode="pop100",
    )
    df = results.read_trials(str(tmp_path / "exp")).set_index("trial_id")
    columns = list(results.EVALUATION_COLUMNS)
    at = list(df.columns).index("dataset") + 1
    assert list(df.columns[at : at + 4]) == columns  # beside the dataset's name
    # a finished run's own record; a stopped or failed trial's from the search, its seed drawing the negatives
    assert df.loc["t1", columns].tolist() == list(sampled.values())
    assert df.loc["t2", columns].tolist() == ["ab" * 32, "leave-one-out", "pop100", 0]
    assert df.loc["t4", "negative_seed"] == 2 and df.loc["t4", "eval_mode"] == "pop100"
    # full ranking draws no negatives
    row = results.build_row(records[2], model="m", dataset="d", default_seed=3, fingerprint=None, eval_mode="full")
    assert [row[c] for c in columns] == [None, "leave-one-out", "full", None]
