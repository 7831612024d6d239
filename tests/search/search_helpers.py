"""Helpers of the search tests: paths and a runner of the CLI in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "tune" / "search.py"


def small(patience: int = 3) -> list[str]:
    """`--set` of a short history and small batches, so that an epoch takes well under a second
    (a key given twice is an error, so a test that wants another patience asks for it here)."""
    return ["--set", "max_length=20", "batch_size=256", f"patience={patience}"]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("RAY_ADDRESS", None)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, str(CLI), *args]


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """tune/search.py in a fresh process (its own embedded Ray unless --address is given)."""
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout, env=cli_env(), cwd=REPO)


def start_cli(*args: str, separate_stderr: bool = False, new_session: bool = False) -> subprocess.Popen:
    """tune/search.py started in the background, its output in text pipes (stderr folded into stdout
    unless `separate_stderr`); `new_session` puts it in its own process group, so that a test can
    signal the search and every process it started."""
    return subprocess.Popen(
        cli_command(*args),
        env=cli_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if separate_stderr else subprocess.STDOUT,
        text=True,
        start_new_session=new_session,
    )
