"""The watchdog of a row's process group (launcher/node/process.py's `watch_group`), standard library only.

Run as `python -I -c <this file's text> PARENT PGID GRACE_S` in its own session (so neither a terminal's
Ctrl-C nor a kill of the launcher's process group reaches it). It sleeps until its parent is gone (the
kernel's parent-death signal wakes it at once; polling getppid() covers systems without prctl), then ends
the group TERM-then-KILL. It exits by itself once the group is gone.
"""

import ctypes
import os
import signal
import sys
import time


class ParentGone(Exception):
    pass


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def watch(parent, pgid, grace):
    def on_parent_death(signum, frame):
        if os.getppid() != parent:  # (a thread of the parent ending signals too: then the parent still lives)
            raise ParentGone

    for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, on_parent_death)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGUSR1), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    try:
        while os.getppid() == parent:
            if not group_alive(pgid):
                return
            time.sleep(0.5)
    except ParentGone:
        pass
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    watch(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
