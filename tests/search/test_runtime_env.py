"""The environment every Ray process of a search gets."""

from __future__ import annotations

from glintru.search import ray_setup


def test_worker_start_timeout_defaults_to_ten_minutes(monkeypatch):
    monkeypatch.delenv(ray_setup.WORKER_START_TIMEOUT_ENV, raising=False)
    env = ray_setup.runtime_env()["env_vars"]
    assert env[ray_setup.WORKER_START_TIMEOUT_ENV] == "600"


def test_users_worker_start_timeout_wins(monkeypatch):
    monkeypatch.setenv(ray_setup.WORKER_START_TIMEOUT_ENV, "42")
    assert ray_setup.runtime_env()["env_vars"][ray_setup.WORKER_START_TIMEOUT_ENV] == "42"


def test_dashboard_port_moves_when_the_usual_one_is_taken():
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        port = ray_setup.dashboard_port(preferred=taken)
        assert port != taken and port > 0
    assert ray_setup.dashboard_port(preferred=taken) == taken


def test_local_mode_starts_its_own_ray_beside_a_running_cluster(monkeypatch):
    """Without --address the search must not join a Ray cluster that runs on this machine (plain
    ray.init() would join the one RAY_ADDRESS or `ray start` names, then refuse the CPU count)."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile

    import ray

    from glintru.search.settings import SearchSettings

    port = ray_setup.dashboard_port(preferred=0)  # any free port
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    head = subprocess.Popen(
        [
            ray_cli,
            "start",
            "--head",
            "--block",
            "--num-cpus=1",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
            f"--temp-dir={temp_dir}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output = []
        for line in head.stdout:  # --block: the head prints its banner, then waits
            output.append(line)
            if "Ray runtime started" in line:
                break
        assert head.poll() is None, "".join(output)
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
        assert ray_setup.start_ray(SearchSettings(space="glintru", data="", num_cpus=3, num_gpus=0)) is True
        try:
            assert ray.cluster_resources()["CPU"] == 3  # its own Ray, not the 1-CPU cluster
        finally:
            ray.shutdown()
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
        shutil.rmtree(temp_dir, ignore_errors=True)
