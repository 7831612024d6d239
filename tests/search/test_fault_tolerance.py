"""Fault tolerance and growth for real: a killed search driver resumed with --resume, a worker node
lost mid-search, and a cluster that gains a node mid-search, on Ray clusters simulated on this
machine (a head and worker nodes). The storage is local but shared: --shared-storage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from glintru.search import results
from glintru.search.ray_setup import dashboard_port

from search_helpers import run_cli, small, start_cli

pytestmark = pytest.mark.slow

MODEL = ["hidden_size=16", "num_heads=2", "num_layers=1"]


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"search exited ({proc.returncode}) before {what}:\n{proc.stdout.read()}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _checkpoints(exp: Path, phase: str = "grid") -> dict[str, list[Path]]:
    """Trial id -> its checkpoint directories (Tune's, in the trial's directory: single-worker trials)."""
    tune_dir = exp / "tune" / phase
    if not tune_dir.is_dir():
        return {}
    return {d.name: sorted(d.glob("checkpoint_*")) for d in tune_dir.iterdir() if (d / "params.json").exists()}


def _finished(exp: Path) -> set[str]:
    return {t for t, cks in _checkpoints(exp).items() if any((c / "metrics.json").exists() for c in cks)}


def _reported_epochs(exp: Path, phase: str) -> dict[str, list[int]]:
    """Trial id -> the epochs of its reports, in the order Tune logged them (the last epoch's report
    is the final one, with the test metrics)."""
    out = {}
    if not (exp / "tune" / phase).is_dir():
        return out
    for trial_dir in (exp / "tune" / phase).iterdir():
        path = trial_dir / "result.json"
        if path.exists():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            out[trial_dir.name] = [r["epoch"] for r in rows]
    return out


def _kill_leftovers(pids: list[int]) -> None:
    """Ray's own reaper ends an embedded cluster with its driver; end whatever it missed."""
    procs = [psutil.Process(p) for p in pids if psutil.pid_exists(p)]
    _, alive = psutil.wait_procs(procs, timeout=60)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=10)


def test_killed_driver_resumes_without_redoing_work(tiny_data, tmp_path):
    exp = tmp_path / "killed"
    args = [
        "--space",
        "glintru",
        "--data",
        str(tiny_data),
        "--grid",
        "lr=3e-3,1e-3",
        "--max-epochs",
        "12",
        "--max-concurrent",
        "1",
        "--num-cpus",
        "4",
        "--storage",
        str(tmp_path),
        "--name",
        "killed",
        *small(patience=12),
        *MODEL,
    ]
    proc = start_cli(*args, new_session=True)
    try:
        # kill once the first trial has finished and the second has a checkpoint
        _wait(
            lambda: len(_finished(exp)) == 1 and len(_checkpoints(exp)) == 2 and all(_checkpoints(exp).values()),
            900,
            "a finished trial and a checkpointed one",
            proc,
        )
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    _kill_leftovers(children)
    finished_before = _finished(exp)
    epochs_before = _reported_epochs(exp, "grid")
    assert not (exp / "trials.parquet").exists()

    done = run_cli("--resume", "--name", "killed", "--storage", str(tmp_path), "--num-cpus", "4")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(exp)

    df = results.read_trials(str(exp))
    assert len(df) == 2 and df["trial_id"].is_unique
    assert (df["status"] == "TERMINATED").all() and df["completed"].all()
    assert sorted(df["config/lr"]) == [1e-3, 3e-3]
    epochs = _reported_epochs(exp, "grid")
    for tid, seen in epochs.items():
        # every epoch trained once: resumed trials continue after their last checkpoint
        assert seen == sorted(set(seen)) and seen[-1] == 12, (tid, seen)
    for tid in finished_before:
        assert epochs[tid] == epochs_before[tid], "a finished trial was trained again"
    resumed = [t for t in epochs_before if t not in finished_before]
    assert resumed and all(epochs[t][: len(epochs_before[t])] == epochs_before[t] for t in resumed)


def _unfinished_by_node(exp: Path, phase: str) -> dict[str, set[str]]:
    """Node id -> trials that reported from it and have not finished."""
    finished = _finished(exp)
    out: dict[str, set[str]] = {}
    if not (exp / "tune" / phase).is_dir():
        return out
    for trial_dir in (exp / "tune" / phase).iterdir():
        path = trial_dir / "result.json"
        if path.exists() and trial_dir.name not in finished:
            for line in path.read_text().splitlines():
                if line.strip():
                    out.setdefault(json.loads(line)["node"], set()).add(trial_dir.name)
    return out


def test_node_loss_retries_trials_from_their_checkpoints(tiny_data, tmp_path):
    from ray.cluster_utils import Cluster

    # the head trains nothing (no CPUs): every trial's workers run on the two worker nodes
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": True, "dashboard_port": dashboard_port()},
    )
    workers = {n.node_id: n for n in (cluster.add_node(num_cpus=2) for _ in range(2))}
    cluster.wait_for_nodes()
    exp = tmp_path / "nodes"
    # long enough that the trials are still training when the test looks (an idle machine runs an
    # epoch of the tiny model in a fraction of a second)
    epochs = 40
    args = [
        "--space",
        "glintru",
        "--data",
        str(tiny_data),
        "--grid",
        "lr=1e-3,2e-3,3e-3,4e-3",
        "--max-epochs",
        str(epochs),
        "--address",
        cluster.address,
        "--storage",
        str(tmp_path),
        "--name",
        "nodes",
        "--max-failures",
        "3",
        "--shared-storage",
        *small(patience=epochs),
        *MODEL,
    ]
    proc = start_cli(*args)
    try:
        # trials on both nodes at once (two fit on each); then lose a node that runs some of them
        _wait(lambda: len(_unfinished_by_node(exp, "grid")) == 2, 900, "trials training on both nodes", proc)
        running = _unfinished_by_node(exp, "grid")
        victim = max(running, key=lambda node: len(running[node]))
        affected = running[victim]
        cluster.remove_node(workers[victim], allow_graceful=False)
        # the autoscaler's part: a replacement node joins
        cluster.add_node(num_cpus=2)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        cluster.shutdown()
    assert proc.returncode == 0, out[-4000:]
    assert out.strip().splitlines()[-1] == str(exp)

    df = results.read_trials(str(exp))
    assert len(df) == 4 and df["trial_id"].is_unique
    assert (df["status"] == "TERMINATED").all() and df["completed"].all()
    assert df["test/ndcg@10"].notna().all()
    assert sorted(df["config/lr"]) == [1e-3, 2e-3, 3e-3, 4e-3]
    failures = df.set_index("trial_id")["num_failures"]
    assert all(failures[t] >= 1 for t in affected), "the trials on the lost node should have been retried"
    reported = _reported_epochs(exp, "grid")
    for tid in affected:
        # retried from the last checkpoint: no epoch is trained twice
        assert reported[tid] == sorted(set(reported[tid])) and reported[tid][-1] == epochs, reported[tid]
    assert len(list((exp / "users").iterdir())) == 4
    assert (df.set_index("trial_id").loc[list(affected), "node"] != victim).all()


def _intervals(exp: Path, phase: str) -> dict[str, tuple[float, float, str]]:
    """Trial id -> (first report time, last report time, node) from Tune's result.json."""
    out = {}
    for trial_dir in (exp / "tune" / phase).iterdir():
        path = trial_dir / "result.json"
        if path.exists():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if rows:
                start = rows[0]["train_call_time"]
                # time_total_s counts from the trainable's start, a moment before train_call_time
                out[trial_dir.name] = (start, start + rows[-1]["time_total_s"], rows[0]["node"])
    return out


def test_concurrency_follows_a_cluster_that_grows(tiny_data, tmp_path):
    """An autoscaling cluster starts small: trials must spread to nodes that join mid-search
    (concurrency fixed when the Tuner was built kept it at one trial at a time)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    first = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    exp = tmp_path / "grow"
    args = [
        "--space",
        "glintru",
        "--data",
        str(tiny_data),
        "--num-samples",
        "6",
        "--max-epochs",
        "40",
        "--scheduler",
        "fifo",
        "--address",
        cluster.address,
        "--storage",
        str(tmp_path),
        "--name",
        "grow",
        "--shared-storage",
        *small(patience=40),
        *MODEL,
    ]
    proc = start_cli(*args)
    try:
        _wait(
            lambda: (exp / "tune" / "search").is_dir() and len(_reported_epochs(exp, "search")) >= 1,
            600,
            "the first trial's report",
            proc,
        )
        added = cluster.add_node(num_cpus=2)  # the autoscaler's part: a node with room for two trials
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        cluster.shutdown()
    assert proc.returncode == 0, out[-4000:]
    df = results.read_trials(str(exp))
    assert len(df) == 6 and df["completed"].all()
    spans = _intervals(exp, "search")
    assert {node for _, _, node in spans.values()} == {first.node_id, added.node_id}
    # at some moment more trials ran at once than the first node could hold
    events = sorted([(start, 1) for start, _, _ in spans.values()] + [(end, -1) for _, end, _ in spans.values()])
    running, most = 0, 0
    for _, step in events:
        running += step
        most = max(most, running)
    assert most >= 2, sorted(spans.values())
