"""Shared fixtures: small prepared datasets written in the real on-disk format, the exact state of a
folder tree, and another process holding an output's lock."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glintru.data.dataset import write_prepared


def make_cyclic_dataset(path, n_users: int = 60, n_items: int = 30, length: int = 12, seed: int = 0):
    """Each user walks the cycle 1 -> 2 -> ... -> n_items -> 1 from a random start: the next item is
    fully predictable from the last one, while popularity is flat."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_users):
        start = rng.integers(0, n_items)
        seqs.append(((start + np.arange(length)) % n_items + 1).astype(np.int32))
    return write_prepared(
        path,
        seqs,
        [f"u{i}" for i in range(n_users)],
        [f"i{j}" for j in range(n_items)],
        name="cyclic",
        source={"format": "test"},
        params={},
    )


@pytest.fixture
def cyclic_dataset(tmp_path):
    from glintru.data.dataset import load_dataset

    return load_dataset(make_cyclic_dataset(tmp_path / "cyclic"))


def tree_state(root) -> dict[str, str]:
    """Every path under `root` (and `root` itself) with the sha256 of its bytes, 'dir', or the target
    of a link: two equal states mean nothing was added, removed or changed by a single byte."""
    root = Path(root)
    state = {}
    for p in [root, *sorted(root.rglob("*"))] if root.is_dir() and not root.is_symlink() else [root]:
        key = str(p.relative_to(root))
        if p.is_symlink():
            state[key] = "link -> " + os.readlink(p)
        elif p.is_dir():
            state[key] = "dir"
        elif p.exists():
            state[key] = hashlib.sha256(p.read_bytes()).hexdigest()
    return state


@pytest.fixture
def snapshot():
    """`snapshot(root)`: the exact state of a folder tree (tree_state), to compare before and after."""
    return tree_state


HOLDER = """
import sys, time
from glintru.outputs import locked
locked(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder():
    """holder(path): another process holding the lock of output `path` until the test ends (or kills it)."""
    procs = []

    def start(path):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has ended (what a lock file left by a killed command names)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests use tiny models, where thread hand-offs cost more than they save on 2 cores."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
