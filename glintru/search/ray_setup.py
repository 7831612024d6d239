"""Ray start-up for a search: an embedded Ray of its own (local mode, in a process group of its own)
or a running cluster joined, the environment every Ray process of the search gets, and a SIGTERM
that stops it like Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import glintru
from glintru.search.plan import local_gpus
from glintru.search.settings import SearchError, SearchSettings

# Ray Train gives a worker group 60 s to start by default: too little on a loaded CPU box, or
# while the autoscaler brings up a GPU node. The user's own setting wins.
WORKER_START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
WORKER_START_TIMEOUT_S = "600"
# a custom resource that cluster/gpu.yaml gives the head node (1000 units): a DDP trial's driver
# asks for one, so that it and its Train controller stay on the head, away from spot GPU nodes
# that the cloud may reclaim
HEAD_RESOURCE = "glintru_head"


def runtime_env() -> dict[str, Any]:
    """The runtime environment of every Ray process of the search (for ray.init): a source checkout
    importable by the workers (an installed package needs nothing) and a patient worker start."""
    env = {WORKER_START_TIMEOUT_ENV: os.environ.get(WORKER_START_TIMEOUT_ENV, WORKER_START_TIMEOUT_S)}
    root = Path(glintru.__file__).resolve().parent.parent
    if not ("site-packages" in root.parts or "dist-packages" in root.parts):
        paths = [str(root)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return {"env_vars": env}


def dashboard_port(preferred: int = 8265) -> int:
    """Ray's usual dashboard port, or a free one when another Ray on this machine holds it
    (two local searches side by side)."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free local port for the Ray dashboard")


def start_ray(s: SearchSettings) -> bool:
    """Start an embedded Ray (local mode) or join a cluster; False when Ray was already running."""
    import ray

    if ray.is_initialized():
        return False
    if s.address is not None:
        ray.init(address=s.address, runtime_env=runtime_env())
    else:
        # the dashboard shows the trials, and serves the state API that Ray Train's own
        # placement-group cleaner polls for DDP trials (behind ReleaseTrainResources).
        # address="local": a Ray of its own even when a `ray start` cluster runs on this machine
        # (plain ray.init() would join that one, whose resources this search did not ask for)
        with own_process_group():
            ray.init(
                address="local",
                num_cpus=s.num_cpus or os.cpu_count(),
                num_gpus=local_gpus(s),
                include_dashboard=True,
                dashboard_port=dashboard_port(),
                runtime_env=runtime_env(),
            )
    return True


@contextlib.contextmanager
def own_process_group() -> Iterator[None]:
    """Processes started inside (the embedded Ray's GCS, raylet, dashboard) go into a process group
    of their own, while this process returns to its group when the block ends.

    A scheduler's stop (`timeout`, `kill -TERM -PGID`, Ctrl-C in a terminal) signals the whole group
    of the search: it must reach the driver alone, which then stops Tune and Ray in order. Had GCS and
    raylet been signalled too, they would be gone before the driver's shutdown, which then fails a
    minute later with 'Failed to connect to GCS'. The group's leader (group_watch.py) ends it should
    the driver die without shutting Ray down. A session leader cannot change groups: there nothing
    moves."""
    if not hasattr(os, "setpgid") or os.getsid(0) == os.getpid():
        yield
        return
    home = os.getpgrp()
    # the new group needs a leader, and this process may lead its own group (a shell's job) already
    leader = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("group_watch.py")), str(os.getpid()), str(home)],
        stdin=subprocess.PIPE,
        preexec_fn=os.setpgrp,
    )
    main = threading.current_thread() is threading.main_thread()
    # out of the terminal's foreground group, a write to it would stop this process under `stty tostop`
    tostop = signal.signal(signal.SIGTTOU, signal.SIG_IGN) if main else None
    try:
        try:
            os.setpgid(0, leader.pid)
            moved = True
        except OSError:  # the search then runs as it would without the separation
            moved = False
        try:
            yield
        finally:
            if moved:
                with contextlib.suppress(OSError):  # `home` gone with all its other processes
                    os.setpgid(0, home)
    finally:
        if tostop is not None:
            signal.signal(signal.SIGTTOU, tostop)
        assert leader.stdin is not None
        leader.stdin.close()  # Ray's processes started: the leader now watches them, and leaves with them


def check_cluster(s: SearchSettings) -> None:
    """Once joined: a cluster without the head resource would leave DDP trial drivers waiting forever."""
    import ray

    if s.address is None or s.workers_per_trial == 1:
        return
    if ray.cluster_resources().get(HEAD_RESOURCE, 0) < 1:
        raise SearchError(
            f"--workers-per-trial {s.workers_per_trial} on a cluster: each trial's driver asks for 1 unit of "
            f"the custom resource {HEAD_RESOURCE!r} so that it runs on the head, but this cluster has none. "
            f"Give the head node `resources: {{{HEAD_RESOURCE}: 1000}}` (cluster/gpu.yaml does) or start it "
            f"with ray start --head --resources='{{\"{HEAD_RESOURCE}\": 1000}}'"
        )


@contextlib.contextmanager
def sigterm_stops_gracefully() -> Iterator[None]:
    """A SIGTERM (a scheduler's time limit, `timeout`, `kill`) takes the path of Ctrl-C: Tune saves
    its state and returns, and the search ends with the resume command. Without this, Ray's own
    handler prints stack traces and the process dies with its state half saved. Enter it after
    ray.init, which installs a SIGTERM handler of its own in this process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def to_interrupt(signum: int, frame: Any) -> None:
        # Tune's SIGINT handler (set during fit) stops the experiment after saving it; outside fit
        # the default one raises KeyboardInterrupt
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, to_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
