"""One trial, without a Ray cluster: what it reports and when, how its failures are classed, what
it asks Tune for, and which finished trials a seed rerun may choose."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import ray.exceptions

from glintru.data.dataset import load_dataset
from glintru.search import results
from glintru.search.phases import trial_resources
from glintru.search.ray_setup import HEAD_RESOURCE
from glintru.search.settings import SearchSettings
from glintru.search.trainable import (
    TrialJob,
    TrialSpec,
    console_first,
    describe_failure,
    placement_group_from_hex,
    train_and_report,
)

TINY = {"hidden_size": 16, "num_heads": 2, "num_layers": 1, "max_length": 20, "batch_size": 256}


def _reports(tiny_data, tmp_path, train_config: dict, overrides: dict, **spec_fields) -> list[dict]:
    spec = TrialSpec("glintru", "glintru", str(tmp_path), train_config=train_config, **spec_fields)
    job = TrialJob(spec, data=None, overrides={**TINY, **overrides}, trial_start=0.0)
    seen: list[dict] = []
    train_and_report(
        job,
        load_dataset(tiny_data),
        {"node": "n"},
        rank=0,
        world_size=1,
        device="cpu",
        report=lambda metrics, ckpt: seen.append({**metrics, "has_checkpoint": ckpt is not None}),
        restored=None,
    )
    return seen


def test_the_last_epoch_is_reported_with_the_test_metrics(tiny_data, tmp_path):
    """ASHA acts on each report: a report of the last epoch without test metrics let it stop a
    trial that had trained every epoch before its test evaluation (a rung on epoch 3)."""
    seen = _reports(tiny_data, tmp_path, {"epochs": 3, "patience": 10, "eval_mode": "full"}, {})
    assert [(r["epoch"], r["final"]) for r in seen] == [(1, False), (2, False), (3, True)]
    final = seen[-1]
    assert final["has_checkpoint"] and final["test/ndcg@10"] >= 0 and final["valid/ndcg@10"] > 0


def test_the_searched_metrics_lead_every_report():
    """Tune's progress table shows a trial's first four numeric metrics: the searched ones come
    first (with their test value at the end), not the start-up timings."""
    metrics = {"final": True, "setup_seconds": 0.1, "valid/hit@5": 0.3, "test/ndcg@10": 0.2, "epoch": 3}
    metrics |= {"infer_ms_per_batch": 9.0, "valid/ndcg@10": 0.25, "node": "n"}
    ordered = console_first(metrics, ("valid/ndcg@10", "infer_ms_per_batch"))
    assert ordered == metrics  # the same items
    assert list(ordered) == [
        "epoch", "valid/ndcg@10", "test/ndcg@10", "infer_ms_per_batch",
        "final", "setup_seconds", "valid/hit@5", "node",
    ]  # fmt: skip


def test_reports_of_a_trial_start_with_its_objective(tiny_data, tmp_path):
    seen = _reports(
        tiny_data, tmp_path, {"epochs": 2, "patience": 10, "eval_mode": "full"}, {}, objective_metrics=("valid/mrr@10",)
    )
    assert [list(r)[:3] for r in seen] == [
        ["epoch", "train_loss", "valid/mrr@10"],
        ["epoch", "valid/mrr@10", "test/mrr@10"],
    ]


def test_a_patience_stop_is_reported_with_the_test_metrics(tiny_data, tmp_path):
    # lr 0: nothing improves after epoch 1, so patience 1 ends training after epoch 2
    seen = _reports(tiny_data, tmp_path, {"epochs": 6, "eval_mode": "full"}, {"patience": 1, "lr": 1e-12})
    epochs = [r["epoch"] for r in seen]
    assert epochs == sorted(set(epochs)), "an epoch was reported twice"
    assert seen[-1]["final"] and not any(r["final"] for r in seen[:-1])
    assert seen[-1]["epoch"] == 2 and seen[-1]["stopped_early"] is True


def test_a_trial_keeps_its_best_epoch_by_the_searched_objective(tiny_data, tmp_path):
    """--objective recall@20: the trial's run selects on Recall@20, and its epoch reports carry
    the epoch's own Recall@20 beside the best so far, not a copy of every validation metric."""
    from glintru.search.phases import trial_spec
    from glintru.search.plan import plan_search

    settings = SearchSettings(space="glintru", data=str(tiny_data), storage=str(tmp_path), max_epochs=4)
    assert trial_spec(plan_search(settings)).train_config["select_metric"] == "ndcg@10"
    plan = plan_search(dataclasses.replace(settings, objective="recall@20"))
    spec = trial_spec(plan)
    assert spec.train_config == {"epochs": 4, "eval_mode": "full", "seed": 0, "select_metric": "recall@20"}
    job = TrialJob(spec, data=None, overrides={**TINY, "lr": 3e-2, "patience": 10}, trial_start=0.0)
    seen, runs = [], []

    def report(metrics, ckpt):
        seen.append(metrics)
        if ckpt is not None and (ckpt / results.FINAL_FILE).exists():
            runs.append(json.loads((ckpt / results.FINAL_FILE).read_text()))

    train_and_report(job, load_dataset(tiny_data), {}, rank=0, world_size=1, device="cpu", report=report, restored=None)
    run = runs[-1]
    curve = [h["valid"]["recall@20"] for h in run["history"]]
    assert run["best_epoch"] == 1 + curve.index(max(curve)) == seen[-1]["best_epoch"]
    for r in seen[:-1]:
        assert [k for k in r if k.startswith("epoch_valid/")] == ["epoch_valid/recall@20"]
        assert r["epoch_valid/recall@20"] == curve[r["epoch"] - 1]
        assert r["valid/recall@20"] == max(curve[: r["epoch"]])


def test_a_worker_error_from_user_code_is_not_retried():
    """Ray 2.60 hands over the workers' own exceptions (no wrapper with a `_base_exc`)."""
    from ray.train import WorkerGroupError

    nan = FloatingPointError("training loss became nan at epoch 1, step 0 (lr=1e9)")
    reason, details, user = describe_failure(WorkerGroupError("rank 0 failed", {0: nan, 1: nan}))
    assert user is True and reason == "FloatingPointError: training loss became nan at epoch 1, step 0 (lr=1e9)"
    assert "FloatingPointError" in details
    lost = ray.exceptions.ActorDiedError()
    _, _, user = describe_failure(WorkerGroupError("rank 1 died", {0: nan, 1: lost}))
    assert user is False, "a lost worker is worth retrying"


def test_trials_ask_tune_for_what_they_use():
    single = SearchSettings(space="glintru", data="", cpus_per_trial=2, gpus_per_trial=0.25)
    # fractional GPUs: four trials share one
    assert trial_resources(single) == {"CPU": 2, "GPU": 0.25}
    assert trial_resources(dataclasses.replace(single, gpus_per_trial=0.0)) == {"CPU": 2}
    ddp = dataclasses.replace(single, workers_per_trial=2, gpus_per_trial=2)
    assert trial_resources(ddp) == {"memory": 1}
    # on a cluster a DDP trial's driver stays on the head (its custom resource, see cluster/gpu.yaml)
    assert trial_resources(dataclasses.replace(ddp, address="auto")) == {"memory": 1, HEAD_RESOURCE: 1}
    assert HEAD_RESOURCE == "glintru_head"


def test_the_one_private_ray_api_is_still_there():
    """placement_group_from_hex rebuilds a handle through ray._raylet; if Ray moves it, this fails."""
    pg = placement_group_from_hex("ab" * 18)
    assert pg.id.hex() == "ab" * 18


def test_seed_reruns_choose_only_trials_that_finished_training():
    # an ASHA-stopped trial is TERMINATED too, and may have the best validation so far
    df = pd.DataFrame(
        {
            "trial_id": ["stopped", "done", "failed"],
            "status": ["TERMINATED", "TERMINATED", "ERROR"],
            "completed": [False, True, False],
            "valid/ndcg@10": [0.9, 0.3, 0.95],
        }
    )
    assert list(results.best_rows(df, 2)["trial_id"]) == ["done"]


def test_a_phase_stopped_between_trials_is_unfinished(tiny_data, tmp_path):
    """Ctrl-C after one trial ended and before the searcher suggested the next leaves no unfinished
    trial in Tune's state; the phase still counts the trials it never created, so it is resumed
    instead of marked done."""
    from glintru.search.phases import count_unfinished, expected_trials
    from glintru.search.plan import plan_search

    plan = plan_search(SearchSettings(space="glintru", data=str(tiny_data), storage=str(tmp_path), num_samples=4))
    done = [results.TrialRecord(trial_id=f"t{i}", phase="search", status="TERMINATED", config={}) for i in range(2)]
    assert count_unfinished(done, expected_trials(plan, "search")) == 2
    running = [*done, results.TrialRecord(trial_id="t2", phase="search", status="RUNNING", config={})]
    assert count_unfinished(running, expected_trials(plan, "search")) == 2
    errored = [
        *done,
        *(results.TrialRecord(trial_id=f"e{i}", phase="search", status="ERROR", config={}) for i in range(2)),
    ]
    assert count_unfinished(errored, expected_trials(plan, "search")) == 0
    grid = plan_search(
        SearchSettings(
            space="glintru", data=str(tiny_data), storage=str(tmp_path), grid={"lr": [1e-3, 1e-2]}, seeds=[0, 1, 2]
        )
    )
    assert expected_trials(grid, "grid") == 6


def test_retry_errored_reruns_finished_phases_with_errors_and_keeps_seed_reruns_true(tiny_data, tmp_path, monkeypatch):
    from glintru.search import phases
    from glintru.search.plan import plan_search
    from glintru.search.settings import SearchError

    plan = plan_search(
        SearchSettings(space="glintru", data=str(tiny_data), storage=str(tmp_path), num_samples=3, seeds=[0, 1])
    )
    status = {"search": ["TERMINATED", "ERROR"], "seeds": ["TERMINATED", "TERMINATED"]}

    def collect(plan, phase):
        return [
            results.TrialRecord(trial_id=f"{phase}{i}", phase=phase, status=s, config={})
            for i, s in enumerate(status[phase])
        ]

    monkeypatch.setattr(phases, "collect_phase", collect)
    # a search whose seeds are still to run: its errored trial runs again first
    assert phases.phases_to_retry(plan, {"search": "done", "seeds": "pending"}) == {"search"}
    # a pending phase is run anyway: nothing to retry in it
    assert phases.phases_to_retry(plan, {"search": "pending", "seeds": "pending"}) == set()
    status["seeds"] = ["TERMINATED", "ERROR"]
    assert phases.phases_to_retry(plan, {"search": "done", "seeds": "running"}) == {"search"}
    # the seed reruns done: retrying the search could change which trials they should have rerun
    with pytest.raises(SearchError, match=r"1 errored trial\(s\) of the search cannot run again: its seed reruns"):
        phases.phases_to_retry(plan, {"search": "done", "seeds": "done"})
    status["search"] = ["TERMINATED", "TERMINATED"]
    assert phases.phases_to_retry(plan, {"search": "done", "seeds": "done"}) == {"seeds"}
