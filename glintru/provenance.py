"""Which code produced a result: the glintru version and, for a source checkout, its git commit."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import glintru


def source_revision(root: Path | None = None) -> dict[str, Any]:
    """{"version", "commit", "dirty"} of the glintru package in use; commit and dirty are None when
    the package is not a git checkout (an installed wheel) or git is missing."""
    root = root or Path(glintru.__file__).resolve().parent.parent
    info: dict[str, Any] = {"version": glintru.__version__, "commit": None, "dirty": None}
    if not (root / ".git").exists():  # a worktree has a .git file, a clone a .git folder
        return info
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return info
    info.update(commit=commit or None, dirty=bool(status.strip()))
    return info
