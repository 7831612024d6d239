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

