"""One live attempt per run dir: a lease, not a lock (issue 21, class 1).

`rerun=failed` issued while the first sweep still ran used to resubmit rows that sweep had planned but
not started; seconds later the first sweep started the same row in the same run dir: two trainings at
once, one setting aside the other's live logs, and the later result overwriting the earlier.  A lock
file would stop that, but a crash would leave it behind and the row could never run again.  A lease
names its holder precisely enough that a successor can tell a live holder from a dead one:

    .lease  {"owner": <random>, "host", "boot_id", "pid", "pid_start", "heartbeat": <unix time>, "what"}

* It is created exclusively (`O_EXCL` on a temporary file linked to its name): one of two racers wins.
* A holder on this host is alive while its pid runs *and* is the same process (its start time in
  /proc, so a recycled pid does not count) in the same boot (`/proc/sys/kernel/random/boot_id`).
* A holder on another host (a Slurm node) is alive while its heartbeat is fresh: each holder rewrites
  `heartbeat` every `HEARTBEAT_S`; one silent for `STALE_S` is dead.
* A dead holder's lease is broken: renamed `.lease.<time>.broken` (kept, like every set-aside file),
  then the successor creates its own.

Who holds it: the launcher that plans a row (from its claim until the row ends; a rerun takes it when
it decides to run the row again), and the node while the row runs (a node in the launcher's own
process keeps the launcher's lease; one elsewhere breaks the submitter's once that has exited).
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .rundir import LEASE_FILE, atomic_create_text, atomic_write_text, now_iso

HEARTBEAT_S = 20.0
STALE_S = 120.0


class LeaseHeld(RuntimeError):
    """The run dir is owned by another live attempt."""

    def __init__(self, run_dir: Path, holder: dict) -> None:
        self.run_dir, self.holder = run_dir, holder
        super().__init__(
            f"{run_dir} is owned by a live attempt ({describe(holder)}); the launcher never runs two "
            "attempts of a row in one run dir at once. Wait for it to end (or cancel it: python -m "
            "launcher.cancel), then run the row again"
        )


def describe(holder: dict) -> str:
    return (
        f"{holder.get('what') or 'launcher'} pid {holder.get('pid')} on {holder.get('host')}, "
        f"since {holder.get('since')}, heartbeat {max(0.0, time.time() - float(holder.get('heartbeat') or 0)):.0f} s ago"
    )


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def pid_start(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22); None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _me(what: str) -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot_id": boot_id(), "pid": pid, "pid_start": pid_start(pid), "what": what}


def read(run_dir: str | os.PathLike) -> dict | None:
    try:
        data = json.loads((Path(run_dir) / LEASE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written or torn: judged by its age below
    return data if isinstance(data, dict) else {}


def alive(holder: dict, path: Path | None = None) -> bool:
    """Whether the holder of a lease still lives (see the module's docstring)."""
    if not holder:  # unreadable: alive while the file is young (a writer mid-rename), dead after
        try:
            return time.time() - path.stat().st_mtime < STALE_S if path else False
        except OSError:
            return False
    same_host = holder.get("host") == socket.gethostname()
    if same_host and holder.get("boot_id") and holder.get("boot_id") == boot_id():
        pid = holder.get("pid")
        return isinstance(pid, int) and pid_start(pid) is not None and pid_start(pid) == holder.get("pid_start")
    if same_host and holder.get("boot_id") and holder.get("boot_id") != boot_id():
        return False  # this host rebooted since
    return time.time() - float(holder.get("heartbeat") or 0) < STALE_S


def mine(holder: dict | None) -> bool:
    """Held by this very process."""
    me = _me("")
    return bool(holder) and all(holder.get(k) == me[k] for k in ("host", "boot_id", "pid", "pid_start"))


@dataclass
class Lease:
    run_dir: Path
    owner: str
    what: str

    @property
    def path(self) -> Path:
        return self.run_dir / LEASE_FILE

    def held(self) -> bool:
        data = read(self.run_dir)
        return bool(data) and data.get("owner") == self.owner

    def renew(self) -> None:
        data = read(self.run_dir)
        if data and data.get("owner") == self.owner:
            atomic_write_text(self.path, json.dumps({**data, "heartbeat": time.time()}) + "\n")

    def release(self) -> None:
        _HELD.pop(str(self.run_dir), None)
        data = read(self.run_dir)
        if data and data.get("owner") == self.owner:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


#: run dir -> the lease this process holds there (renewed by one heartbeat thread)
_HELD: dict[str, Lease] = {}
_BEAT: threading.Thread | None = None
_LOCK = threading.Lock()


def _beat() -> None:
    while True:
        time.sleep(HEARTBEAT_S)
        for lease in list(_HELD.values()):
            try:
                lease.renew()
            except OSError:
                pass


def acquire(run_dir: str | os.PathLike, what: str = "launcher") -> Lease:
    """This process's lease on `run_dir` (kept if it holds one already); LeaseHeld when a live attempt has it."""
    global _BEAT
    run_dir = Path(run_dir).resolve()
    path = run_dir / LEASE_FILE
    for _ in range(5):
        holder = read(run_dir)
        if holder is not None:
            if mine(holder):
                lease = Lease(run_dir, holder["owner"], holder.get("what") or what)
                break
            if alive(holder, path):
                raise LeaseHeld(run_dir, holder)
            _break(path, holder.get("owner"))
            continue
        owner = secrets.token_hex(8)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_create_text(
                path, json.dumps({**_me(what), "owner": owner, "since": now_iso(), "heartbeat": time.time()}) + "\n"
            )
        except FileExistsError:
            continue  # another attempt won the race: judge it on the next turn
        lease = Lease(run_dir, owner, what)
        break
    else:
        raise LeaseHeld(run_dir, read(run_dir) or {})
    with _LOCK:
        _HELD[str(run_dir)] = lease
        if _BEAT is None or not _BEAT.is_alive():
            _BEAT = threading.Thread(target=_beat, name="lease-heartbeat", daemon=True)
            _BEAT.start()
    return lease


def _break(path: Path, dead_owner: str | None) -> None:
    """Set a dead holder's lease aside (kept as `.lease.<time>.broken`). Two successors may race to break it:
    one that finds it moved a live lease (the other successor's, just made) puts it back."""
    aside = path.with_name(f"{path.name}.{now_iso().replace(':', '')}.{secrets.token_hex(3)}.broken")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return
    moved = read_file(aside)
    if moved and moved.get("owner") != dead_owner:
        try:
            os.link(aside, path)
            os.unlink(aside)
        except OSError:
            pass


def read_file(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def live_holder(run_dir: str | os.PathLike) -> dict | None:
    """The live attempt that holds `run_dir`, other than this process; None when it is free (or ours)."""
    run_dir = Path(run_dir)
    holder = read(run_dir)
    if holder is None or mine(holder) or not alive(holder, run_dir / LEASE_FILE):
        return None
    return holder


def release(run_dir: str | os.PathLike) -> None:
    lease = _HELD.get(str(Path(run_dir).resolve()))
    if lease is not None:
        lease.release()


def release_all() -> None:
    """At exit: give back every lease this process still holds (a crash leaves them to be broken instead)."""
    for lease in list(_HELD.values()):
        try:
            lease.release()
        except OSError:
            pass


atexit.register(release_all)
