"""Fixtures of the search tests: a tiny synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from glintru.data.synthetic import generate


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return generate(
        tmp_path_factory.mktemp("data") / "tiny", n_users=120, n_items=60, avg_length=10, seed=0, features=False
    )
