"""One row over several nodes: how a row's own launcher spans them, and what runs on each node.

The model (docs/cluster.md, "One row over several nodes"): `hardware.nodes` nodes, one task per node, each
running the one node entry point, `python -m launcher.node RUN_DIR`, which runs the row's command on its node.
The backend places the tasks (Slurm: one allocation of N nodes, one task each; Ray: a STRICT_SPREAD placement
group, one bundle per node) and tells each its node rank; the row's own launcher (torchrun,
torch.distributed.launch, detectron2's launch, mpirun, horovodrun) starts the ranks of its node and meets the others
at the master address and port.

* **Plan time.** A row declares how its code spans nodes (`impl.processes.span`): its command then carries
  `${lx.span:HOW,${hardware.nodes}}` (or `${lx.torchrun:GPUS,NODES}`), which is nothing on one node and, on
  several, the launcher's arguments reading the variables below. A row that cannot (one process driving every
  GPU) says why in `impl.processes.span_blocker` and `hardware.nodes > 1` is refused, saying so.
* **Run time, on every node.** The node's rank comes from the scheduler (`SLURM_NODEID`, or
  `LAUNCHER_NODE_RANK` from the Ray driver); node 0 is the leader: it picks a free port, publishes its
  address and the port in `nodes/rendezvous.json` in the run dir (a filesystem every node shares), runs the
  command into train.log and writes result.json as on one node. Every other node waits for that rendezvous
  (of its own job: `LAUNCHER_SPAN_ID`), runs the same command into `nodes/train.rank<i>.log`, takes its own
  provenance (`nodes/provenance.rank<i>.json`) and ends with `nodes/rank<i>.json`.
* **A node that dies.** Each node touches `nodes/rank<i>.alive` every `HEARTBEAT_S`; the leader stops the row
  and ends it `failed`, naming the node, when a peer's heartbeat is older than `LOST_AFTER_S` (and a peer
  stops when the leader's is): a bounded time whatever the row's own collectives do (gloo waits 30 min).
  The variables the command reads: LAUNCHER_NODE_RANK, LAUNCHER_NNODES, LAUNCHER_MASTER_ADDR,
  LAUNCHER_MASTER_PORT, LAUNCHER_HOSTS (comma-separated, rank order), LAUNCHER_MPI_HOSTS (host:slots,...),
  and torch's own MASTER_ADDR / MASTER_PORT / NODE_RANK.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .rundir import atomic_write_json, now_iso

#: how each declared way of spanning nodes is spelt (shell text; the variables are set on each node)
_ARGS = {
    "torchrun": '--nnodes={n} --node_rank="$LAUNCHER_NODE_RANK" --master_addr="$LAUNCHER_MASTER_ADDR" '
    '--master_port="$LAUNCHER_MASTER_PORT"',
    "torch.distributed.launch": '--nnodes={n} --node_rank="$LAUNCHER_NODE_RANK" --master_addr="$LAUNCHER_MASTER_ADDR" '
    '--master_port="$LAUNCHER_MASTER_PORT"',
    "detectron2": '--num-machines {n} --machine-rank "$LAUNCHER_NODE_RANK" '
    '--dist-url "tcp://$LAUNCHER_MASTER_ADDR:$LAUNCHER_MASTER_PORT"',
    # mpirun starts every rank itself from the leader's node, over the allocated hosts (the other nodes hold
    # their allocation and wait); OpenMPI reaches them with its own launcher (ssh, or Slurm's where allowed)
    "mpirun": '-H "$LAUNCHER_MPI_HOSTS"',
    # horovodrun (gloo) the same way: one horovodrun on the first node, `-H host:slots,...`, ssh to the others
    "horovodrun": '-H "$LAUNCHER_MPI_HOSTS"',
}
SPANS = tuple(_ARGS)
#: the ways whose command runs on the leader only (it starts the other nodes' ranks itself)
LEADER_ONLY = ("mpirun", "horovodrun")

NODES_DIR = "nodes"  # in the run dir
RENDEZVOUS_FILE = "rendezvous.json"
HEARTBEAT_S = float(os.environ.get("LAUNCHER_SPAN_HEARTBEAT_S", "2"))
LOST_AFTER_S = float(os.environ.get("LAUNCHER_SPAN_LOST_AFTER_S", "30"))
FIRST_BEAT_S = float(os.environ.get("LAUNCHER_SPAN_FIRST_BEAT_S", "300"))  # a peer's start (its build, imports)


class SpanError(RuntimeError):
    """A node of a multi-node row cannot take its place (no rendezvous, no rank); the message says why."""


def span_args(how: str, nodes: int) -> str:
    """The arguments with which the row's launcher spans `nodes` nodes; '' on one node."""
    if nodes <= 1:
        return ""
    if how not in _ARGS:
        raise ValueError(f"lx.span: {how!r} is not a way to span nodes; use one of {', '.join(SPANS)}")
    return _ARGS[how].format(n=int(nodes))


# ---------------------------------------------------------------- plan time


def span_problems(spec: Any) -> list[str]:
    """Why the row cannot run on `spec.nodes` nodes as planned (none on one node)."""
    if int(spec.nodes) <= 1:
        return []
    p = spec.processes or {}
    how = p.get("span")
    if not how:
        why = p.get("span_blocker") or "its code runs on one node (impl.processes.span is not set)"
        return [f"{spec.impl} cannot span hardware.nodes={spec.nodes} nodes: {why}. Set hardware.nodes=1"]
    if how not in SPANS:
        return [f"impl.processes.span={how!r} for {spec.impl}; use one of {', '.join(SPANS)}"]
    if "$LAUNCHER_NODE_RANK" not in spec.command and "$LAUNCHER_MPI_HOSTS" not in spec.command:
        return [
            f"{spec.impl} declares impl.processes.span={how} but its command does not use the node's place: "
            f"put ${{lx.span:{how},${{hardware.nodes}}}} where its launcher takes its arguments "
            "(or set impl.multinode.impl.command)"
        ]
    return []


def total_ranks(spec: Any) -> int:
    """Ranks of the whole row: the command's ranks per node x nodes."""
    p = spec.processes or {}
    return int(p.get("ranks") or 1) * max(1, int(spec.nodes))


# ---------------------------------------------------------------- run time: where this node stands


@dataclass
class Place:
    rank: int
    nodes: int
    span_id: str  # one attempt of the row: the job (and restart) every node of it shares

    @property
    def leader(self) -> bool:
        return self.rank == 0


def place_from_env(spec: Any, env: dict[str, str] | None = None) -> Place:
    """This node's rank in the row, from the scheduler: Slurm's node id, or the Ray driver's variables."""
    env = dict(os.environ if env is None else env)
    nodes = int(spec.nodes)
    if env.get("LAUNCHER_NODE_RANK") is not None:
        rank = int(env["LAUNCHER_NODE_RANK"])
    elif env.get("SLURM_NODEID") is not None:
        rank = int(env["SLURM_NODEID"])
    else:
        raise SpanError(
            f"{spec.impl} asks for {nodes} nodes but this node has no rank: run it through a backend "
            "that places one task per node (backend=slurm or backend=ray), not backend=local"
        )
    span_id = env.get("LAUNCHER_SPAN_ID") or (
        f"slurm-{env['SLURM_JOB_ID']}-{env.get('SLURM_RESTART_COUNT', '0')}" if env.get("SLURM_JOB_ID") else ""
    )
    if not span_id:
        raise SpanError("no LAUNCHER_SPAN_ID or SLURM_JOB_ID: the nodes of this row cannot tell its attempt apart")
    if not 0 <= rank < nodes:
        raise SpanError(f"node rank {rank} is outside the row's {nodes} nodes")
    return Place(rank, nodes, span_id)


def node_address() -> str:
    """The address other nodes reach this one at: the backend's word (Ray's node IP), else its hostname."""
    return os.environ.get("LAUNCHER_NODE_ADDR") or socket.gethostname()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def nodes_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / NODES_DIR


def publish_rendezvous(run_dir: str | Path, place: Place) -> dict[str, Any]:
    """The leader: its address and a free port, for this attempt; an older attempt's files are set aside."""
    d = nodes_dir(run_dir)
    if d.is_dir():
        old = _read_json(d / RENDEZVOUS_FILE)
        if old and old.get("span_id") != place.span_id:
            d.rename(d.with_name(f"{NODES_DIR}.{time.strftime('%Y%m%dT%H%M%S')}.previous"))
    d.mkdir(parents=True, exist_ok=True)
    rv = {
        "span_id": place.span_id,
        "nodes": place.nodes,
        "master_addr": node_address(),
        "master_port": free_port(),
        "host": socket.gethostname(),
        "published_at": now_iso(),
    }
    atomic_write_json(d / RENDEZVOUS_FILE, rv)
    return rv


def await_rendezvous(run_dir: str | Path, place: Place, timeout_s: float = FIRST_BEAT_S) -> dict[str, Any]:
    """A peer: the leader's rendezvous of this attempt, waiting for it at most `timeout_s`."""
    path = nodes_dir(run_dir) / RENDEZVOUS_FILE
    deadline = time.monotonic() + timeout_s
    while True:
        rv = _read_json(path)
        if rv and rv.get("span_id") == place.span_id:
            return rv
        if time.monotonic() > deadline:
            raise SpanError(
                f"node rank {place.rank}: the leader (node rank 0) published no rendezvous for "
                f"{place.span_id} in {path} within {timeout_s:.0f} s: is the run dir on a filesystem "
                "every node shares?"
            )
        time.sleep(0.5)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- heartbeats


def alive_file(run_dir: str | Path, rank: int) -> Path:
    return nodes_dir(run_dir) / f"rank{rank}.alive"


class Heartbeat:
    """Touches `nodes/rank<i>.alive` (host, pid, span id, time) every HEARTBEAT_S while the node runs."""

    def __init__(self, run_dir: str | Path, place: Place) -> None:
        self.path = alive_file(run_dir, place.rank)
        self.place = place
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="span-heartbeat", daemon=True)

    def start(self) -> "Heartbeat":
        self._beat()
        self._thread.start()
        return self

    def _beat(self) -> None:
        try:
            atomic_write_json(
                self.path,
                {
                    "span_id": self.place.span_id,
                    "rank": self.place.rank,
                    "host": socket.gethostname(),
                    "addr": node_address(),
                    "pid": os.getpid(),
                    "t": time.time(),
                },
            )
        except OSError:
            pass

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self._beat()

    def stop(self) -> None:
        self._stop.set()


@dataclass
class PeerWatch:
    """Watches the other nodes' heartbeats; `lost()` names the first that stopped (None while all beat)."""

    run_dir: Path
    place: Place
    ranks: list[int]
    started: float = field(default_factory=time.time)

    def beat(self, rank: int) -> dict[str, Any] | None:
        b = _read_json(alive_file(self.run_dir, rank))
        return b if b and b.get("span_id") == self.place.span_id else None

    def lost(self) -> str | None:
        now = time.time()
        for r in self.ranks:
            b = self.beat(r)
            if b is None:
                if now - self.started > FIRST_BEAT_S:
                    return f"node rank {r} never started (no heartbeat within {FIRST_BEAT_S:.0f} s)"
                continue
            if now - float(b.get("t", 0)) > LOST_AFTER_S:
                return (
                    f"node rank {r} ({b.get('host')}) was lost: its heartbeat stopped {now - float(b['t']):.0f} s "
                    f"ago (the node, or its task, died)"
                )
        return None

    def hosts(self) -> list[str | None]:
        """Every node's host, rank order (None for a node that never reported)."""
        out: list[str | None] = []
        for r in range(self.place.nodes):
            b = self.beat(r)
            out.append(b.get("host") if b else None)
        return out


def watch_in_background(
    watch: PeerWatch, on_lost: Callable[[str], None], every_s: float = HEARTBEAT_S
) -> threading.Event:
    """Calls `on_lost(reason)` once when a watched node is lost; set the returned event to stop watching."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every_s):
            reason = watch.lost()
            if reason:
                on_lost(reason)
                return

    threading.Thread(target=run, name="span-watch", daemon=True).start()
    return stop


def span_environ(rv: dict[str, Any], place: Place, hosts: list[str], slots: int) -> dict[str, str]:
    """The variables the row's command reads (see the module's docstring)."""
    return {
        "LAUNCHER_NODE_RANK": str(place.rank),
        "LAUNCHER_NNODES": str(place.nodes),
        "LAUNCHER_MASTER_ADDR": str(rv["master_addr"]),
        "LAUNCHER_MASTER_PORT": str(rv["master_port"]),
        "LAUNCHER_HOSTS": ",".join(hosts),
        "LAUNCHER_MPI_HOSTS": ",".join(f"{h}:{slots}" for h in hosts),
        "MASTER_ADDR": str(rv["master_addr"]),
        "MASTER_PORT": str(rv["master_port"]),
        "NODE_RANK": str(place.rank),
        "LAUNCHER_SPAN_ID": place.span_id,
    }


def await_hosts(run_dir: str | Path, place: Place, timeout_s: float = FIRST_BEAT_S) -> list[str]:
    """Every node's address, rank order, once each has beaten once (mpirun needs the whole list)."""
    watch = PeerWatch(Path(run_dir), place, list(range(place.nodes)))
    deadline = time.monotonic() + timeout_s
    while True:
        beats = [watch.beat(r) for r in range(place.nodes)]
        if all(beats):
            return [str(b.get("addr") or b.get("host")) for b in beats]  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            missing = [r for r, b in enumerate(beats) if not b]
            raise SpanError(f"node ranks {missing} never reported within {timeout_s:.0f} s")
        time.sleep(0.5)


# ---------------------------------------------------------------- a node that is not the leader


def run_peer(run_dir: str | Path, place: Place, echo: Any = None) -> int:
    """Node rank > 0: the row's command on this node, its own log and provenance; the leader writes the result.

    Returns the exit status for the scheduler: 0 when this node's part ended well or the leader's result is
    written (the row's outcome is the leader's to tell), 1 otherwise."""
    from .node.environment import command_environ
    from .node.execute import Execution
    from .node.run import ProvenanceSnapshot, _build, _script  # the node package imports this module
    from .spec import JobSpec

    run_dir = Path(run_dir).resolve()
    spec = JobSpec.load(run_dir)
    spec.run_dir = str(run_dir)
    d = nodes_dir(run_dir)
    started = now_iso()
    heartbeat = None
    status: dict[str, Any] = {
        "rank": place.rank,
        "span_id": place.span_id,
        "host": socket.gethostname(),
        "started_at": started,
    }
    try:
        rv = await_rendezvous(run_dir, place)
        heartbeat = Heartbeat(run_dir, place).start()
        snapshot = ProvenanceSnapshot(spec, d / f"provenance.rank{place.rank}.json").start()
        _build(spec, echo)
        how = (spec.processes or {}).get("span")
        hosts = await_hosts(run_dir, place)
        if how in LEADER_ONLY:  # the leader's mpirun starts this node's ranks; hold the node until it ends
            code = _hold_until_leader_ends(run_dir, place)
        else:
            env = {
                **command_environ(spec),
                **span_environ(rv, place, hosts, int((spec.processes or {}).get("ranks") or 1)),
            }
            execution = Execution(
                _script(spec), spec.exec_dir, env, d / f"train.rank{place.rank}.log", echo=echo
            ).start()
            watch = PeerWatch(run_dir, place, [0])
            stop_watch = watch_in_background(
                watch, lambda reason: (status.update(lost=reason), execution.stop(f"leader lost: {reason}"))
            )
            res = execution.wait(
                timeout_s=spec.time_limit_min * 60.0, poll=lambda: _leader_finished(run_dir, place, grace_s=30)
            )
            stop_watch.set()
            code = res.returncode
            status.update(
                returncode=code,
                elapsed_s=round(res.elapsed_s, 1),
                stopped_early=res.stopped_early,
                tail=res.tail[-1500:],
            )
        snapshot.join(30)
    except SpanError as e:
        status.update(error=str(e))
        code = None
    except Exception as e:  # a bug of ours must still leave this node's word behind
        status.update(error=f"launcher error on node rank {place.rank}: {e!r}")
        code = None
    finally:
        if heartbeat is not None:
            heartbeat.stop()
    status["finished_at"] = now_iso()
    try:
        atomic_write_json(d / f"rank{place.rank}.json", status)
    except OSError:
        pass
    if status.get("error") and echo is not None:
        print(f"launcher.node (rank {place.rank}): {status['error']}", file=echo, flush=True)
    return 0 if code == 0 or _leader_finished(run_dir, place, 0) else 1


DONE_FILE = "done.json"  # in nodes/: the leader wrote this attempt's result


def mark_done(run_dir: str | Path, place: Place, status: str, lost: str | None = None) -> None:
    """The leader, after result.json: tells the other nodes (and the scheduler's side) the row has ended, how,
    and which node it lost if it lost one."""
    try:
        atomic_write_json(
            nodes_dir(run_dir) / DONE_FILE, {"span_id": place.span_id, "status": status, "lost": lost, "t": time.time()}
        )
    except OSError:
        pass


def read_done(run_dir: str | Path) -> dict[str, Any]:
    """The leader's last word on the row (`{}` before it has one)."""
    return _read_json(nodes_dir(run_dir) / DONE_FILE) or {}


def _leader_finished(run_dir: Path, place: Place, grace_s: float) -> bool:
    """Whether the leader ended this attempt `grace_s` ago or more: a peer still running then (its collectives
    waiting on a leader that stopped at the window's end) is stopped."""
    done = _read_json(nodes_dir(run_dir) / DONE_FILE)
    return bool(done) and done.get("span_id") == place.span_id and time.time() - float(done.get("t", 0)) >= grace_s


def _hold_until_leader_ends(run_dir: Path, place: Place) -> int:
    watch = PeerWatch(run_dir, place, [0])
    while True:
        if _leader_finished(run_dir, place, 0):
            return 0
        if watch.lost():
            return 1
        time.sleep(HEARTBEAT_S)


def main_peer_or_leader(run_dir: str | Path, echo: Any = None) -> int | None:
    """For `python -m launcher.node` on a multi-node row: run this node's part when it is not the leader
    (the exit status), None when it is (the node entry point goes on as the leader)."""
    from .spec import JobSpec

    spec = JobSpec.load(run_dir)
    if int(spec.nodes) <= 1:
        return None
    try:
        place = place_from_env(spec)
    except SpanError as e:
        print(f"launcher.node: {e}", file=sys.stderr)
        return None if os.environ.get("SLURM_JOB_ID") is None and "LAUNCHER_NODE_RANK" not in os.environ else 2
    if place.leader:
        return None
    return run_peer(run_dir, place, echo)


def leader_setup(run_dir: str | Path, spec: Any) -> tuple[Place, dict[str, str], "PeerWatch", Heartbeat]:
    """The leader's rendezvous, heartbeat and the environment for its command; raises SpanError."""
    place = place_from_env(spec)
    rv = publish_rendezvous(run_dir, place)
    heartbeat = Heartbeat(run_dir, place).start()
    hosts = await_hosts(run_dir, place)
    env = span_environ(rv, place, hosts, int((spec.processes or {}).get("ranks") or 1))
    return place, env, PeerWatch(Path(run_dir), place, list(range(1, place.nodes))), heartbeat


def spawn_node(run_dir: str | Path, env: dict[str, str]) -> subprocess.Popen:
    """`python -m launcher.node RUN_DIR` as a child that gets SIGTERM when its parent dies (the Ray driver)."""

    def die_with_parent() -> None:
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    return subprocess.Popen([sys.executable, "-m", "launcher.node", str(run_dir)], env=env, preexec_fn=die_with_parent)


def apply_multinode(cfg: Any, keep: Any = frozenset()) -> Any:
    """A copy of `cfg` with the row's `impl.multinode` overrides (dotted keys) applied, except keys in `keep`
    (the user's own overrides win): the command a row needs to span nodes where its one-node command cannot
    (mmdetection's dist_train.sh passes no --nnodes)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.set_struct(cfg, False)
    for key, value in OmegaConf.to_container(cfg.impl.multinode, resolve=False).items():
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            from .plan import ConfigError

            raise ConfigError(f"impl.multinode of {cfg.impl.name!r} overrides {key!r}, which is not a config key")
        if key not in keep:
            OmegaConf.update(cfg, key, value, merge=False)
    return cfg
