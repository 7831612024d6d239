"""The torch pin is one fact: pyproject.toml, the Makefile's index install, the install docs and the
Docker image agree; pyproject.toml points to an install section that exists."""

from __future__ import annotations

import re
from pathlib import Path

from doc_pages import pages, section

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = (ROOT / "pyproject.toml").read_text()


def _torch_pin() -> str:
    deps = tomllib.loads(PYPROJECT)["project"]["dependencies"]
    return next(d.split("==")[1] for d in deps if d.startswith("torch=="))


def test_torch_version_is_the_same_everywhere():
    pin = _torch_pin()
    make = re.search(r"^TORCH_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert make and make.group(1) == pin
    docker = re.search(r"^ARG TORCH_VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert docker and docker.group(1) == pin
    docs = "\n".join(pages().values())
    assert f"torch=={pin} --index-url https://download.pytorch.org/whl/cpu" in docs


def test_pyproject_points_to_the_install_section_and_agrees_with_it():
    """The comment above the torch pin names a docs section that exists and tells what it tells:
    the pin leaves the build to the user, who installs it first; the Makefile's TORCH_INDEX does so."""
    ref = re.search(r'\(([\w/]+\.md), "([^"]+)"', PYPROJECT)
    assert ref, "pyproject.toml: name the install section beside the torch pin"
    page, title = ref.groups()
    text = " ".join(section(pages()[page], title).split())  # as read, line breaks aside
    pin = _torch_pin()
    assert "does not choose between CPU and CUDA builds" in text and "first, then the package" in text
    assert "make install TORCH_INDEX=https://download.pytorch.org/whl/" in text
    assert f"pip install torch=={pin} --index-url https://download.pytorch.org/whl/cu" in text
    assert "TORCH_INDEX ?=" in (ROOT / "Makefile").read_text()


def test_license_file_matches_the_declared_license():
    meta = tomllib.loads(PYPROJECT)["project"]
    assert meta["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
