"""A row over several Ray nodes: the job's driver, `python -m launcher.backends.ray.span RUN_DIR`.

The Jobs API runs one entrypoint; for a row with `hardware.nodes = N > 1` that entrypoint is this driver (it
reserves nothing itself). It asks for a placement group of N bundles, each the row's GPUs and CPUs, with
`STRICT_SPREAD` (one bundle per node, never two on one), and starts one actor in each bundle; each actor runs
the one node entry point, `python -m launcher.node RUN_DIR`, with its node rank (`LAUNCHER_NODE_RANK`), the
attempt (`LAUNCHER_SPAN_ID`, the Ray job's id) and the address other nodes reach it at (`LAUNCHER_NODE_ADDR`,
its Ray node IP). From there it is the same as on Slurm (launcher/span.py): node 0 leads and writes result.json.

Ends: the leader's end ends the row (the other nodes' processes are stopped after a grace). A node that dies
(its raylet gone) shows as a dead actor: when it is the leader, this driver writes the row `failed` naming it;
any other node is caught by the leader's heartbeat watch within LAUNCHER_SPAN_LOST_AFTER_S. A stop through the
Jobs API (SIGTERM here) stops every node's entry point, which writes `cancelled`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from ...rundir import RESULT_FILE, Result, read_result, write_result
from ...spec import JobSpec

#: how long the other nodes may go on after the leader ended (their collectives notice it themselves)
PEER_GRACE_S = 30


def _node_task_class():
    import ray

    @ray.remote(max_concurrency=2)  # `stop` runs while `run` waits
    class NodeTask:
        def __init__(self) -> None:
            self.proc = None

        def run(self, run_dir: str, rank: int, span_id: str) -> tuple[int, str, int | None]:
            from launcher.span import spawn_node

            env = dict(
                os.environ,
                LAUNCHER_NODE_RANK=str(rank),
                LAUNCHER_SPAN_ID=span_id,
                LAUNCHER_NODE_ADDR=ray.util.get_node_ip_address(),
            )
            self.proc = spawn_node(run_dir, env)
            return rank, socket.gethostname(), self.proc.wait()

        def stop(self, grace_s: float = 20.0) -> None:
            proc = self.proc
            if proc is None or proc.poll() is not None:
                return
            proc.send_signal(signal.SIGTERM)  # the node stops its command and writes its word
            try:
                proc.wait(timeout=grace_s)
            except Exception:
                proc.kill()

    return NodeTask


def _write_failed(run_dir: Path, spec: JobSpec, started: float, reason: str) -> None:
    """The leader is gone: the row's result says so, unless the leader wrote this attempt's result first."""
    path = run_dir / RESULT_FILE
    if path.is_file() and path.stat().st_mtime >= started:
        try:
            if read_result(run_dir).status:
                return
        except Exception:
            pass
    write_result(
        run_dir, Result.for_spec(spec, "failed", error=reason, job_id=os.environ.get("LAUNCHER_JOB_ID"), host=None)
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m launcher.backends.ray.span RUN_DIR", file=sys.stderr)
        return 2
    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    run_dir = Path(argv[0]).resolve()
    spec = JobSpec.load(run_dir)
    spec.run_dir = str(run_dir)
    started = time.time()
    span_id = os.environ.get("LAUNCHER_JOB_ID") or os.environ.get("RAY_JOB_SUBMISSION_ID") or f"ray-{os.getpid()}"
    ray.init(logging_level="WARNING", log_to_driver=False)
    bundle: dict[str, float] = {"CPU": float(max(1, spec.cpus))}
    if spec.gpus:
        bundle["GPU"] = float(spec.gpus)
    pg = placement_group(
        [dict(bundle) for _ in range(spec.nodes)], strategy="STRICT_SPREAD", name=f"launcher-{span_id}"
    )
    print(f"[ray span] waiting for {spec.nodes} nodes with {bundle} each (STRICT_SPREAD)", flush=True)
    ray.get(pg.ready())
    NodeTask = _node_task_class()
    actors = [
        NodeTask.options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i),
            num_cpus=bundle["CPU"],
            num_gpus=bundle.get("GPU", 0),
        ).remote()
        for i in range(spec.nodes)
    ]
    refs = {a.run.remote(str(run_dir), i, span_id): i for i, a in enumerate(actors)}

    def stop_all(*_args) -> None:
        ray.get([a.stop.remote() for a in actors], timeout=60)

    def on_term(signum, _frame) -> None:
        try:
            stop_all()
        except Exception:
            pass
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    leader_code: int | None = None
    pending = list(refs)
    leader_done_at: float | None = None
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=5)
        for ref in done:
            rank = refs[ref]
            try:
                _, host, code = ray.get(ref)
                print(f"[ray span] node rank {rank} ({host}) ended with {code}", flush=True)
                if rank == 0:
                    leader_code, leader_done_at = code, time.time()
            except Exception as e:  # the actor died: its node (or its worker) is gone
                from ...span import alive_file

                try:
                    host = json.loads(alive_file(run_dir, rank).read_text()).get("host")
                except (OSError, ValueError):
                    host = "host unknown"
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                reason = f"node rank {rank} ({host}) was lost: its Ray actor died ({type(e).__name__}: {first})"
                print(f"[ray span] {reason}", flush=True)
                if rank == 0:
                    _write_failed(run_dir, spec, started, reason + " (the leader: no result from it)")
                    leader_code, leader_done_at = 1, time.time()
        if leader_done_at is not None and pending and time.time() - leader_done_at > PEER_GRACE_S:
            for ref in pending:
                try:
                    actors[refs[ref]].stop.remote()
                except Exception:
                    pass
            ray.wait(pending, num_returns=len(pending), timeout=60)
            break
    return 0 if leader_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
