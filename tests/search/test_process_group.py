"""ray_setup.own_process_group without Ray: what starts inside leaves the driver's process group, the
driver returns to it, a signal to that group reaches the driver alone, and what started inside ends
when the driver dies without cleaning up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest

from search_helpers import REPO, cli_env

pytestmark = pytest.mark.skipif(not hasattr(os, "setpgid"), reason="POSIX process groups")

DRIVER = """
import os, subprocess, sys, time
import psutil
from glintru.search.ray_setup import own_process_group
home = os.getpgrp()
with own_process_group():
    subprocess.run([sys.executable, "-c", "pass"])  # started inside, and done
    leader = psutil.Process().children()  # the group's leader alone, waiting for the block to end
left = psutil.wait_procs(leader, timeout=30)[1]
with own_process_group():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(len(leader), len(left), home, os.getpgrp(), child.pid, os.getpgid(child.pid), flush=True)
time.sleep(120)
"""


def test_a_signal_to_the_drivers_group_spares_what_started_inside_until_the_driver_is_gone():
    # the driver leads a group of its own, as a shell's job does
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER],
        env=cli_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=os.setpgrp,
    )
    child = None
    try:
        leaders, left, home, after, child_pid, child_group = map(int, driver.stdout.readline().split())
        assert (leaders, left) == (1, 0), "the group's leader leaves once nothing started inside runs"
        child = psutil.Process(child_pid)
        assert home == driver.pid and after == home, "the driver is back in its own group"
        assert child_group not in (home, os.getpgrp()), "what started inside is in a group of its own"
        os.killpg(driver.pid, signal.SIGTERM)  # Ctrl-C, `timeout`, `kill -TERM -PGID`: the whole group
        assert driver.wait(timeout=30) == -signal.SIGTERM
        # the signal spared the child; the driver's death without a shutdown then ends it
        gone, _ = psutil.wait_procs([child], timeout=30)
        assert gone, "the child outlived its driver"
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        if child is not None and child.is_running():
            child.kill()
