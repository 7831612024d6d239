"""The leader and watcher of an embedded Ray's process group (ray_setup.own_process_group), run as a
script by the search's driver: `python group_watch.py DRIVER_PID HOME_PGID`.

It leads the group while the driver starts Ray's processes in it. Once the driver closes its stdin,
it steps into the driver's own group, deaf to the stop signals meant for the driver, and watches:
should the driver die without shutting Ray down (SIGKILL, a crash), it ends Ray's group, whose
agents would otherwise linger for a minute; it leaves as soon as the group is empty."""

from __future__ import annotations

import os
import signal
import sys
import time

POLL_S = 0.5
GRACE_S = 5.0  # between SIGTERM and SIGKILL


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def end_group(group: int) -> None:
    for sig, grace in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.1)


def main(driver: int, home: int) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    group = os.getpid()
    sys.stdin.read()  # until the driver has started Ray in this group (or died)
    try:
        os.setpgid(0, home)
    except OSError:  # the driver's group is gone: stay, and go with Ray's group at the end
        pass
    while group_alive(group):
        if os.getppid() != driver:
            end_group(group)
            return
        time.sleep(POLL_S)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
