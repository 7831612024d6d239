"""With an embedded Ray: the dataset shared through the object store, and short real searches on
synthetic data (Optuna + ASHA, seed reruns, a grid with DDP trials, a trial that fails with NaN
loss, TensorBoard logs, the Optuna study, resume)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import ray

from glintru.data.dataset import load_dataset
from glintru.search import results
from glintru.search.data import fetch_dataset, in_shared_memory, share_dataset
from glintru.search.ray_setup import dashboard_port
from glintru.search.runner import run_search
from glintru.search.settings import SearchSettings

from search_helpers import REPO

SMALL = {"max_length": 20, "batch_size": 256, "patience": 3}


@pytest.fixture(scope="module")
def local_ray():
    # as the search starts it, with the dashboard (Ray Train's placement-group cleaner needs it);
    # the data probes below live in this test module, so workers import it from here
    paths = f"{REPO}:{REPO / 'tests' / 'search'}"
    ray.init(
        num_cpus=4,
        include_dashboard=True,
        dashboard_port=dashboard_port(),
        runtime_env={"env_vars": {"PYTHONPATH": paths}},
    )
    yield
    ray.shutdown()


# -- the dataset in the object store --------------------------------------------------------------


def _location(ds) -> tuple[str, int]:
    """(shared file backing the item ids, their offset in it) as this process maps them."""
    address = ds.values.__array_interface__["data"][0]
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= address < hi:
                return parts[-1] if len(parts) > 5 else "", address - lo + int(parts[2], 16)
    raise AssertionError("address not mapped")


@ray.remote(num_cpus=1)
def _probe(shared):
    import os

    ds = fetch_dataset(shared)
    return {
        "pid": os.getpid(),
        "shared": in_shared_memory(ds),
        "location": _location(ds),
        "sum": int(ds.values.sum()),
        "n_users": ds.n_users,
        "lengths": ds.lengths.tolist(),
        "writeable": ds.values.flags.writeable,
    }


def test_workers_read_one_shared_copy(local_ray, tiny_data):
    local = load_dataset(tiny_data)
    assert in_shared_memory(local) is False  # read from Parquet: private memory
    shared = share_dataset(tiny_data)
    assert shared.name == "synthetic" and shared.nbytes > local.values.nbytes
    probes = ray.get([_probe.remote(shared) for _ in range(3)])
    assert len({p["pid"] for p in probes}) > 1, "the probes should run in different processes"
    for p in probes:
        assert p["shared"] is True and p["writeable"] is False
        assert p["sum"] == int(local.values.sum()) and p["n_users"] == local.n_users
        assert p["lengths"] == local.lengths.tolist()
    # every process maps the same bytes of the same object-store file: one copy on the node
    assert len({p["location"] for p in probes}) == 1
    driver_view = fetch_dataset(shared)
    assert in_shared_memory(driver_view) is True and driver_view.path.name == "tiny"
    np.testing.assert_array_equal(driver_view.offsets, local.offsets)


# -- releasing the CPUs of stopped trials ---------------------------------------------------------


@ray.remote(num_cpus=0)
class _Owner:
    """Stands in for a Train controller: it creates the workers' placement group, then dies."""

    def reserve(self, cpus: int) -> str:
        from ray.util.placement_group import placement_group

        pg = placement_group([{"CPU": 1}] * cpus)
        ray.get(pg.ready())
        return pg.id.hex()

    def ping(self) -> bool:
        return True


def _held_cpus() -> float:
    from ray.util.placement_group import placement_group_table

    return sum(
        b.get("CPU", 0)
        for pg in placement_group_table().values()
        if pg["state"] == "CREATED"
        for b in pg["bundles"].values()
    )


def _wait_until_dead(actor, seconds: float = 30) -> None:
    """ray.kill only asks for the kill: a call sent right after it may still be served. Wait
    until calls fail."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            ray.get(actor.ping.remote(), timeout=seconds)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.1)
    pytest.fail(f"the actor still answered {seconds} s after ray.kill")


def test_driver_releases_the_train_workers_of_an_ended_trial(local_ray):
    from types import SimpleNamespace

    from glintru.search.trainable import PLACEMENT_GROUP_KEY, ReleaseTrainResources, release_placement_group

    owner = _Owner.remote()
    pg_id = ray.get(owner.reserve.remote(2))
    try:
        ray.kill(owner)
        _wait_until_dead(owner)
        # the group outlives its creator, holding its CPUs
        assert _held_cpus() == 2
        callback = ReleaseTrainResources()
        trial = SimpleNamespace(last_result={"epoch": 1, PLACEMENT_GROUP_KEY: pg_id})
        callback.on_trial_complete(iteration=1, trials=[trial], trial=trial)
        assert callback.released == [pg_id]
        deadline = time.time() + 30
        while _held_cpus() and time.time() < deadline:
            time.sleep(0.2)
        assert _held_cpus() == 0
    finally:
        release_placement_group(pg_id)  # never leave the CPUs held for the tests after this one
    # already removed, never reported, or unknown: nothing to do
    assert release_placement_group(pg_id) is False
    callback.on_trial_error(iteration=2, trials=[], trial=SimpleNamespace(last_result={}))
    callback.on_trial_recover(iteration=2, trials=[], trial=SimpleNamespace(last_result=None))
    assert release_placement_group("ab" * 18) is False
    assert callback.released == [pg_id]


# -- searches -------------------------------------------------------------------------------------


def _assert_trained_once(exp: Path, phase: str, trial_id: str) -> None:
    """A trial that failed in user code: failed.json recorded, every attempt after the first
    replayed it without training, and no epoch reported twice."""
    from glintru.search.trainable import FAILED_FILE, REPLAYED

    failure = json.loads((exp / "train" / trial_id / FAILED_FILE).read_text())
    assert failure["reason"].startswith("FloatingPointError: training loss became nan")
    attempts = (exp / "tune" / phase / trial_id / "error.txt").read_text().split("Failure # ")[1:]
    assert attempts and all(REPLAYED in a for a in attempts[1:]) and REPLAYED not in attempts[0]
    result = exp / "tune" / phase / trial_id / "result.json"
    epochs = [json.loads(x)["epoch"] for x in result.read_text().splitlines() if x.strip()] if result.exists() else []
    assert epochs == sorted(set(epochs))


@pytest.mark.slow
def test_single_worker_trials_train_in_their_tune_trainable(local_ray, tiny_data, tmp_path):
    # one at a time, so that the second trial gets the first one's process (Tune reuses it)
    settings = SearchSettings(
        space="glintru",
        data=str(tiny_data),
        grid={"lr": [1e-2, 1e-2, 1e9]},
        max_epochs=2,
        max_failures=2,
        max_concurrent=1,
        storage=str(tmp_path),
        name="direct",
        overrides={**SMALL, "hidden_size": 16, "num_heads": 2},
        verbose=0,
    )
    exp = Path(run_search(settings))
    df = results.read_trials(str(exp))
    good, nan = df[df["config/lr"] == 1e-2], df[df["config/lr"] == 1e9].iloc[0]
    assert good["completed"].all() and (good["test/ndcg@10"] > 0).all() and good["data_zero_copy"].all()
    # no Ray Train: the checkpoints are Tune's, in the trial's own directory
    for _, row in good.iterrows():
        assert Path(row["run_dir"]).parent == exp / "tune" / "grid" / row["trial_id"]
        assert row["worker_start_seconds"] < 1 and not (exp / "train" / row["trial_id"]).exists()
    # the reused process leaks nothing into the next trial: the same config gives the same metrics
    pids = {
        json.loads((exp / "tune" / "grid" / t / "result.json").read_text().splitlines()[0])["pid"]
        for t in good["trial_id"]
    }
    assert len(pids) == 1, "the second trial should have reused the first one's process"
    # Tune keeps the order of a report, whose first numeric metrics its progress table shows
    lines = (exp / "tune" / "grid" / good["trial_id"].iloc[0] / "result.json").read_text().splitlines()
    assert list(json.loads(lines[0]))[:3] == ["epoch", "train_loss", "valid/ndcg@10"]
    assert list(json.loads(lines[-1]))[:3] == ["epoch", "valid/ndcg@10", "test/ndcg@10"]
    first, second = good.iloc[0], good.iloc[1]
    for col in ("valid/ndcg@10", "test/ndcg@10", "test/recall@10"):
        assert first[col] == second[col], col
    assert nan["status"] == "ERROR" and nan["error"].startswith("FloatingPointError: training loss became nan")
    _assert_trained_once(exp, "grid", nan["trial_id"])


@pytest.mark.slow
def test_two_objectives_give_a_pareto_front(local_ray, tiny_data, tmp_path):
    from glintru.search.objectives import parse_objectives

    settings = SearchSettings(
        space="glintru",
        data=str(tiny_data),
        num_samples=4,
        max_epochs=1,
        objective="ndcg@10,infer_ms",
        sampler="nsga2",
        storage=str(tmp_path),
        name="mo",
        overrides={**SMALL, "hidden_size": 16, "num_heads": 2},
        verbose=0,
    )
    exp = Path(run_search(settings))
    df = results.read_trials(str(exp))
    front = df[df["pareto"]]
    assert df["completed"].all() and len(front) >= 1 and df["infer_ms_per_batch"].notna().all()
    # no trial of the front is dominated by any trial
    for _, a in front.iterrows():
        for _, b in df.iterrows():
            assert not (
                b["valid/ndcg@10"] >= a["valid/ndcg@10"]
                and b["infer_ms_per_batch"] <= a["infer_ms_per_batch"]
                and (b["valid/ndcg@10"] > a["valid/ndcg@10"] or b["infer_ms_per_batch"] < a["infer_ms_per_batch"])
            )
    # Optuna was told both values of every trial
    study = optuna.load_study(
        study_name="mo",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(exp / "optuna.journal"))),
    )
    assert [len(t.values) for t in study.trials] == [2] * 4
    assert sorted(round(t.values[1], 6) for t in study.trials) == sorted(round(v, 6) for v in df["infer_ms_per_batch"])
    info = json.loads((exp / "experiment.json").read_text())
    assert [o["name"] for o in info["objectives"]] == ["ndcg@10", "infer_ms"] and info["sampler"] == "nsga2"
    assert info["scheduler"] == "fifo"
    assert parse_objectives("ndcg@10,infer_ms")[1].metric == "infer_ms_per_batch"


@pytest.mark.slow
def test_optuna_search_then_seed_reruns(local_ray, tiny_data, tmp_path):
    settings = SearchSettings(
        space="glintru",
        data=str(tiny_data),
        num_samples=3,
        max_epochs=2,
        seeds=[0, 1],
        storage=str(tmp_path),
        name="opt",
        overrides={**SMALL, "hidden_size": 16},
        verbose=0,
        seed=7,
    )
    exp = Path(run_search(settings))
    assert exp == tmp_path / "opt"
    df = results.read_trials(str(exp))
    assert df["trial_id"].is_unique and len(df) == 5
    search, seeds = df[df["phase"] == "search"], df[df["phase"] == "seeds"]
    assert len(search) == 3 and len(seeds) == 2
    assert (df["status"] == "TERMINATED").all()
    # hidden_size was fixed by --set, so it is not a searched parameter
    assert "config/hidden_size" not in df.columns
    assert {"config/lr", "config/kernel_size", "config/ablation", "config/gate_activation"} <= set(df.columns)
    # the seed reruns repeat the best search trial by validation, with each seed, trained to the end
    best = search.sort_values("valid/ndcg@10", ascending=False).iloc[0]
    assert set(seeds["source_trial"]) == {best["trial_id"]} and sorted(seeds["seed"]) == [0, 1]
    for col in ("config/lr", "config/kernel_size", "config/ablation"):
        assert (seeds[col] == best[col]).all()
    assert seeds["completed"].all() and seeds["test/ndcg@10"].notna().all()
    # every row says what its results rest on: the data's fingerprint, the split and the protocol
    fingerprint = load_dataset(tiny_data).fingerprint
    assert (df["dataset_fingerprint"] == fingerprint).all() and (df["split"] == "leave-one-out").all()
    assert (df["eval_mode"] == "full").all() and df["negative_seed"].isna().all()  # full ranking draws none
    for tid in df.loc[df["completed"], "trial_id"]:
        users = pd.read_parquet(exp / "users" / f"{tid}.parquet")
        assert len(users) == 120 and "ndcg@10" in users.columns
    # the Optuna study is on disk for optuna-dashboard, one finished trial per search trial
    study = optuna.load_study(
        study_name="opt",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(exp / "optuna.journal"))),
    )
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert sorted(t.value for t in study.trials) == sorted(search["valid/ndcg@10"])
    info = json.loads((exp / "experiment.json").read_text())
    assert info["phases"] == {"search": "done", "seeds": "done"}
    assert info["metric"] == "valid/ndcg@10" and info["model"] == "glintru" and info["eval_mode"] == "full"
    assert info["dataset_fingerprint"] == fingerprint


@pytest.mark.slow
def test_grid_with_ddp_asha_and_a_failing_trial(local_ray, tiny_data, tmp_path):
    # one at a time, so that ASHA sees the good trial first and stops the slow learner at its rung
    settings = SearchSettings(
        space="glintru",
        data=str(tiny_data),
        grid={"lr": [1e-2, 1e9, 1e-6]},
        scheduler="asha",
        reduction_factor=2,
        max_epochs=3,
        max_concurrent=1,
        workers_per_trial=2,
        cpus_per_trial=2,
        max_failures=1,
        storage=str(tmp_path),
        name="grid",
        overrides={**SMALL, "hidden_size": 16, "num_heads": 2},
        verbose=0,
    )
    exp = Path(run_search(settings))
    # ASHA stopped the slow trial; its Train workers' CPUs are free when the search returns
    assert _held_cpus() == 0
    df = results.read_trials(str(exp)).set_index("config/lr")
    good, nan, slow = df.loc[1e-2], df.loc[1e9], df.loc[1e-6]
    assert good["status"] == "TERMINATED" and good["completed"] and good["test/ndcg@10"] > 0
    assert good["epochs"] == 3 and good["data_zero_copy"] and good["setup_seconds"] > 0
    assert good["device"] == "cpu" and good["node"]
    assert nan["status"] == "ERROR" and nan["error"].startswith("FloatingPointError: training loss became nan")
    assert pd.isna(nan["test/ndcg@10"])
    # a failure in user code is recorded once and never trained again (retrying fails the same way)
    _assert_trained_once(exp, "grid", nan["trial_id"])
    assert slow["status"] == "TERMINATED" and not slow["completed"] and slow["epochs"] < 3
    assert slow["valid/ndcg@10"] < good["valid/ndcg@10"]
    run = Path(good["run_dir"])
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2 and config["train_config"]["lr"] == 1e-2
    assert config["model_config"]["hidden_size"] == 16 and (run / "model.pt").exists()
    assert sorted(p.stem for p in (exp / "users").iterdir()) == [good["trial_id"]]
    # Tune's TensorBoard logs, one directory per trial named by its id
    for tid in df["trial_id"]:
        assert list((exp / "tune" / "grid" / tid).glob("events.out.tfevents.*")), tid

    # resuming a finished experiment reruns nothing and keeps every row
    before = results.read_trials(str(exp))
    again = run_search(SearchSettings(space="", data="", storage=str(tmp_path), name="grid", resume=True, verbose=0))
    after = results.read_trials(again)
    pd.testing.assert_frame_equal(before.drop(columns=["num_failures"]), after.drop(columns=["num_failures"]))
