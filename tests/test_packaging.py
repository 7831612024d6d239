"""The torch pin is one fact: pyproject.toml, the Makefile's CPU-index install and the Docker image agree."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_torch_version_is_the_same_everywhere():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d.split("==")[1] for d in deps if d.startswith("torch=="))
    make = re.search(r"^TORCH_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert make and make.group(1) == pin
    assert f"torch=={pin} --index-url https://download.pytorch.org/whl/cpu" in (ROOT / "README.md").read_text()


def test_license_file_matches_the_declared_license():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
