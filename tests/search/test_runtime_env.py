"""The environment every Ray process of a search gets."""

from __future__ import annotations

from glintru.search import runner


def test_worker_start_timeout_defaults_to_ten_minutes(monkeypatch):
    monkeypatch.delenv(runner.WORKER_START_TIMEOUT_ENV, raising=False)
    env = runner._runtime_env()["env_vars"]
    assert env[runner.WORKER_START_TIMEOUT_ENV] == "600"


def test_users_worker_start_timeout_wins(monkeypatch):
    monkeypatch.setenv(runner.WORKER_START_TIMEOUT_ENV, "42")
    assert runner._runtime_env()["env_vars"][runner.WORKER_START_TIMEOUT_ENV] == "42"



def test_dashboard_port_moves_when_the_usual_one_is_taken():
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        port = runner.dashboard_port(preferred=taken)
        assert port != taken and port > 0
    assert runner.dashboard_port(preferred=taken) == taken
