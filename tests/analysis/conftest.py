"""Shared fixtures: small experiment directories written once per test session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import analysis_fakes as fakes  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="session")
def golden_exp(tmp_path_factory) -> Path:
    return fakes.write_experiment(tmp_path_factory.mktemp("exp") / "golden", fakes.golden_trials(), name="golden")


@pytest.fixture(scope="session")
def ablation_exp(tmp_path_factory) -> Path:
    return fakes.write_experiment(tmp_path_factory.mktemp("exp") / "gate", fakes.golden_ablation_trials(), name="gate")


@pytest.fixture(scope="session")
def paper_exp(tmp_path_factory) -> Path:
    return fakes.paper_like(tmp_path_factory.mktemp("exp") / "paper", n_users=150)


@pytest.fixture(scope="session")
def search_exp(tmp_path_factory) -> Path:
    return fakes.search_like(tmp_path_factory.mktemp("exp") / "search")
