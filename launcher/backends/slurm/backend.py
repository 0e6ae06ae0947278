"""Submission to Slurm through submitit, and the state of a submitted row.

* **One task per node.** Every seed row brings its own process launcher (`torch.distributed.launch`,
  `dist_train.sh`, `mpirun -np 8`, one process driving all GPUs), so a job is one node, one task,
  the row's GPUs as `--gres=gpu:N`; the row's command spawns its ranks. srun never multiplies them.
* **Arrays.** The rows of one `submit()` call that share resources go out as one job array
  (`executor.batch()`), capped by `array_parallelism`; ids are `ARRAYID_INDEX`.
* **Honest states.** `state()` believes the node's `result.json` when it belongs to this job, and
  adds the scheduler's reason when the node only saw a signal (who cancelled it, a time limit);
  a row without a result gets its state from accounting (accounting.py).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

from ...rundir import JobState, Result, State
from ...span import read_done
from ...spec import JobSpec
from ..base import Backend, BackendConfig, BackendError
from .accounting import (
    ACTIVE_PENDING,
    ACTIVE_RUNNING,
    Snapshot,
    base_state,
    job_record,
    killed_by_signal,
    map_final,
    pending_state,
    slurm_command,
)
from .fit import fit_problem, partition_nodes, sbatch_args, test_only
from .job import SLURM_ENV, PROJECT_ROOT, NodeCall, signal_delay_s, slurm_job_id, slurm_nodes, submitit_folder


@dataclass
class SlurmConfig(BackendConfig):
    """conf/backend/slurm.yaml: where and how rows are queued (sbatch options)."""

    name: str = "slurm"
    partition: Optional[str] = None  # --partition
    account: Optional[str] = None  # --account
    qos: Optional[str] = None  # --qos
    constraint: Optional[str] = None  # --constraint, e.g. volta32gb
    exclusive: bool = True  # --exclusive: a benchmark wants the whole node (no other job beside it)
    # --mem: "node" = all of the node's memory (--mem=0), "hardware" = the hardware group's mem_gb, or a size ("400G")
    mem: str = "node"
    # --gres=gpu:<type>:N with the hardware group's gpu_type: auto (typed when the partition's nodes name GPU
    # types, untyped gpu:N when they do not) | typed | untyped
    gres_type: str = "auto"
    array_parallelism: Optional[int] = None  # cap on rows of one sweep running at once
    max_requeue: int = 2  # preemption requeues, bounded (a time limit never requeues)
    additional_parameters: Dict[str, Any] = field(default_factory=dict)  # extra sbatch parameters
    setup: List[str] = field(default_factory=list)  # shell lines run in the job before the node entry point
    poll_s: float = 5.0  # how often a waiting launcher asks sacct


class SlurmUnavailable(BackendError):
    """The Slurm client commands are missing or the controller does not answer."""


def check_slurm() -> None:
    """Fail before queueing anything when Slurm cannot be reached, saying why and what to do."""
    missing = [c for c in ("sbatch", "srun", "sacct", "squeue", "scancel") if shutil.which(c) is None]
    if missing:
        raise SlurmUnavailable(
            f"Slurm client commands not found: {', '.join(missing)}; run on a Slurm "
            "login node (or start the CI cluster: .ci/services/slurm.sh start)"
        )
    try:
        p = slurm_command(["sinfo", "-h", "-o", "%P %a"], timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmUnavailable(f"`sinfo` did not answer: {e}") from e
    if p.returncode != 0:
        conf = os.environ.get("SLURM_CONF", "the default slurm.conf")
        raise SlurmUnavailable(
            f"the Slurm controller does not answer (`sinfo` failed with {conf}): "
            f"{p.stderr.strip()}; check SLURM_CONF or that slurmctld is up"
        )


#: placement_problems per distinct request, for this process (one launch): 200 rows of one shape ask Slurm once
_PLACEMENT_SEEN: dict[str, list[str]] = {}


class SlurmBackend(Backend):
    name = "slurm"
    Config = SlurmConfig
    config: SlurmConfig
    env_vars = SLURM_ENV
    _snap: Snapshot | None = None

    @classmethod
    def job_id_in_job(cls, environ: Mapping[str, str] = os.environ) -> str | None:
        return slurm_job_id(environ)  # NodeCall passes it to the node (job_environ)

    @classmethod
    def nodes_in_job(cls, environ: Mapping[str, str] = os.environ) -> tuple[str | None, int | None]:
        return slurm_nodes(environ)

    # -- resources ---------------------------------------------------------------------------------
    def parameters(self, spec: JobSpec) -> dict[str, Any]:
        """submitit SlurmExecutor parameters for one row: one node, one task, its GPUs, CPUs, memory, time."""
        cfg: SlurmConfig = self.config.merged(spec.backend_config)  # type: ignore[assignment]
        setup = [f"export PYTHONPATH={shlex.quote(str(PROJECT_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"]
        setup += list(cfg.setup or [])
        params: dict[str, Any] = {
            # one allocation of hardware.nodes nodes, one task on each (launcher/span.py: the first node leads)
            "nodes": max(1, int(spec.nodes)),
            "ntasks_per_node": 1,  # the row's own launcher spawns its ranks
            "cpus_per_task": max(1, int(spec.cpus)),
            "time": int(spec.time_limit_min),
            "signal_delay_s": signal_delay_s(spec.time_limit_min),
            "setup": setup,
        }
        if spec.gpus:
            gpu_type = self._gres_type(cfg, spec)
            params["gres"] = f"gpu:{gpu_type}:{int(spec.gpus)}" if gpu_type else f"gpu:{int(spec.gpus)}"
        mem = str(cfg.mem or "node")
        if mem == "node":
            params["mem"] = "0"  # all of the node's memory (sbatch --mem=0)
        elif mem == "hardware":
            if spec.mem_gb:
                params["mem"] = f"{int(spec.mem_gb)}GB"
        else:
            params["mem"] = mem
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(cfg, key):
                params[key] = str(getattr(cfg, key))
        if cfg.exclusive:
            params["exclusive"] = True
            # The whole node: its CPUs come with --exclusive, however many it has (an 8-GPU node may have fewer
            # than hardware.cpus), so no --cpus-per-task is asked; the one task's srun step is given them all
            # (srun reads SLURM_CPUS_PER_TASK; inside the job SLURM_CPUS_ON_NODE is the node's count).
            del params["cpus_per_task"]
            setup.insert(1, 'export SLURM_CPUS_PER_TASK="${SLURM_CPUS_ON_NODE:-1}"')  # before backend.setup's lines
        if cfg.array_parallelism:
            params["array_parallelism"] = int(cfg.array_parallelism)
        if cfg.additional_parameters:
            params["additional_parameters"] = dict(cfg.additional_parameters)
        return params

    @staticmethod
    def _gres_type(cfg: SlurmConfig, spec: JobSpec) -> str | None:
        """The GPU type to ask for: the hardware group's, when the site's gres names types (or when told to)."""
        if not spec.gpu_type or cfg.gres_type == "untyped":
            return None
        if cfg.gres_type == "typed":
            return spec.gpu_type
        if cfg.gres_type != "auto":
            raise ValueError(f"backend.gres_type={cfg.gres_type!r}: use auto, typed or untyped")
        found = partition_nodes(cfg.partition)
        typed = found is not None and any(t for n in found[1] for t in n.gpus)
        return spec.gpu_type if typed else None

    def placement_problems(self, spec: JobSpec) -> list[str]:
        """Before submission: a request no node of the partition can satisfy is refused, naming the resource
        and the largest node (sinfo), then Slurm's own word on it (sbatch --test-only; no job is made)."""
        if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
            return []  # the submission says what is missing (check_slurm)
        params = self.parameters(spec)
        key = json.dumps(params, sort_keys=True, default=str)
        if key not in _PLACEMENT_SEEN:  # a sweep's rows mostly ask the same: sinfo + sbatch --test-only once each
            _PLACEMENT_SEEN[key] = self._placement_problems(params)
        return list(_PLACEMENT_SEEN[key])

    def _placement_problems(self, params: dict[str, Any]) -> list[str]:
        found = partition_nodes(params.get("partition"))
        if found is None:
            return []
        problem = fit_problem(params, *found)
        if problem:
            return [f"slurm: {problem}"]
        refused = test_only(params)
        return (
            [f"slurm: sbatch --test-only refuses the request ({' '.join(sbatch_args(params))}): {refused}"]
            if refused
            else []
        )

    def describe(self, spec: JobSpec) -> list[str]:
        params = {k: v for k, v in self.parameters(spec).items() if k != "setup"}
        return [
            f"slurm (submitit): {' '.join(f'{k}={v}' for k, v in params.items())}",
            "slurm job runs:  python -m launcher.node RUN_DIR (one task on one node)"
            if spec.nodes <= 1
            else f"slurm job runs:  python -m launcher.node RUN_DIR as one task on each of {spec.nodes} nodes (srun); "
            "the first leads: master address and a free port, result.json",
        ]

    def _node_call(self, spec: JobSpec) -> NodeCall:
        cfg: SlurmConfig = self.config.merged(spec.backend_config)  # type: ignore[assignment]
        return NodeCall(spec.time_limit_min, int(cfg.max_requeue))

    # -- submit --------------------------------------------------------------------------------------
    def _submit(self, specs: list[JobSpec]) -> Iterator[tuple[JobSpec, str]]:
        """Rows with equal resources (and submitit folder) go out as one job array."""
        import submitit

        if not specs:
            return
        check_slurm()
        groups: dict[str, list[JobSpec]] = {}
        params_of: dict[str, tuple[Path, dict]] = {}
        for spec in specs:
            params = self.parameters(spec)
            folder = submitit_folder(spec)
            key = json.dumps([str(folder), params], sort_keys=True, default=str)
            groups.setdefault(key, []).append(spec)
            params_of[key] = (folder, params)
        for key, members in groups.items():
            folder, params = params_of[key]
            first = members[0]
            name = first.impl if len(members) == 1 else Path(first.sweep_dir or first.run_dir).name
            # timeouts never requeue (max_num_timeout=0); preemption requeues are bounded by NodeCall
            executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
            executor.update_parameters(**{**params, "job_name": f"launcher-{name}"})
            jobs = []
            with executor.batch():
                for spec in members:
                    jobs.append(executor.submit(self._node_call(spec), str(Path(spec.run_dir).resolve())))
            for spec, job in zip(members, jobs):
                yield spec, str(job.job_id)

    # -- state ---------------------------------------------------------------------------------------
    def _owns(self, result: Result, job_id: str) -> bool:
        return not result.job_id or result.job_id == job_id  # else an earlier submission's, same run dir

    @contextmanager
    def _batch(self, job_ids: list[str]) -> Iterator[None]:
        """One sacct and one squeue for the whole batch, instead of both per row."""
        self._snap = Snapshot.of(job_ids)
        try:
            yield
        finally:
            self._snap = None

    def _record(self, job_id: str) -> dict | None:
        return self._snap.record(job_id) if self._snap is not None else job_record(job_id)

    def _settled(self, job_id: str, run_dir: str | Path | None, own: JobState) -> JobState:
        rec = self._record(job_id)
        if rec is None:
            return own
        base = base_state(rec)
        if base in ACTIVE_PENDING:  # requeued: the result is the interrupted attempt's
            return pending_state(job_id, rec, self._snap)
        # the node only saw a signal (or its command die of one); the scheduler knows why it came
        signalled = own.state == "cancelled" or (own.state == "failed" and killed_by_signal(run_dir))
        if signalled and run_dir is not None and own.state == "failed":
            signalled = not read_done(run_dir).get("lost")  # node 0 stopped it: the row lost a node (span.py)
        if base in ACTIVE_RUNNING:
            if signalled:  # the job itself is still settling why (NodeCall: a time limit, a preemption)
                return JobState(
                    State.RUNNING, "ending after a signal; the node reported: " + (own.reason or "").split("\n")[0]
                )
            return own  # sacct lags the controller by seconds: a result written meanwhile is the fresher word
        if signalled:  # who cancelled, a time limit, a preemption
            sched = map_final(rec, job_id, run_dir)
            if sched.state in ("cancelled", "timeout") or base == "NODE_FAIL":  # a node died under the row
                return JobState(sched.state, f"{sched.reason}; the node reported: {own.reason}")
        return own

    def _scheduler_state(self, job_id: str, run_dir: str | Path | None) -> JobState:
        rec = self._record(job_id)
        if rec is None:
            return JobState(State.UNKNOWN, f"Slurm knows no job {job_id} (neither sacct nor squeue lists it)")
        base = base_state(rec)
        if base in ACTIVE_PENDING:
            return pending_state(job_id, rec, self._snap)
        if base in ACTIVE_RUNNING:
            return JobState(State.RUNNING, "suspended" if base == "SUSPENDED" else None)
        return map_final(rec, job_id, run_dir)

    def cancel(self, job_id: str) -> None:
        p = slurm_command(["scancel", str(job_id)])
        if p.returncode != 0:
            raise RuntimeError(f"scancel {job_id} failed: {p.stderr.strip() or p.stdout.strip()}")
