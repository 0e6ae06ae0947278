"""Does a row fit the hardware it is planned for, and the allocation every backend gives it? Plan time, no IO.

* **GPU architecture.** A row's `software.cuda` says which CUDA its stack was built with; CUDA 10.x
  compilers and libraries (cuDNN 7.6 too) stop at compute capability 7.5, so the 2020 seed stack cannot
  run on an A100 (8.0) or H100 (9.0). The plan and the dry run say so and point at `stack=today` (the
  row's pinned code on today's software) or `hardware=v100x8`.
* **Processes.** Every backend gives a row one task on one node with the hardware's GPUs and CPUs
  (Slurm: `--ntasks-per-node=1`; Ray: one entrypoint reserving them); the row's own launcher starts its
  ranks (`impl.processes`: `mp.spawn`, `torch.distributed.launch`, `mpirun`, or one process driving every
  GPU). The command must start no more ranks than there are GPUs (and CPUs), and `mpirun` must be given
  slots: inside a one-task Slurm allocation OpenMPI's Slurm support counts one slot, so `mpirun -np 8`
  refuses to start ("not enough slots"); `--mca ras ^slurm -H localhost:8` (verified on Slurm 22.05 +
  OpenMPI 4.1) gives 8 slots there and under Ray or a plain shell alike.
"""

from __future__ import annotations

import re

from .spec import JobSpec

SPAWNERS = ("single", "mp.spawn", "torch.distributed.launch", "torchrun", "mpirun", "horovodrun")
#: the spawners that start every node's ranks from the first node, over the hosts of `-H` (launcher/span.py)
_OVER_HOSTS = ("mpirun", "horovodrun")
#: (CUDA version from which on) -> the highest compute capability it can target
_MAX_CC = (
    ((9, 0), (7, 2)),
    ((10, 0), (7, 5)),
    ((11, 0), (8, 0)),
    ((11, 1), (8, 6)),
    ((11, 4), (8, 7)),
    ((11, 8), (9, 0)),
    ((12, 8), (12, 0)),
)


def _version(text: str | None) -> tuple[int, ...] | None:
    m = re.match(r"^\s*(\d+)(?:\.(\d+))?", str(text or ""))
    return (int(m.group(1)), int(m.group(2) or 0)) if m else None


def max_compute_capability(cuda: str) -> tuple[int, int] | None:
    v = _version(cuda)
    if v is None:
        return None
    best = None
    for since, cc in _MAX_CC:
        if v >= since:
            best = cc
    return best


def cuda_needed(cc: tuple[int, ...]) -> str:
    for since, top in _MAX_CC:
        if top >= cc:
            return ".".join(map(str, since))
    return "a newer CUDA"


def arch_problems(spec: JobSpec) -> list[str]:
    """A CUDA stack that cannot target the hardware's GPUs (the seed's CUDA 10 on A100 / H100)."""
    software = (spec.environment or {}).get("software") or {}
    cc, cuda = _version(spec.compute_capability), software.get("cuda")
    top = max_compute_capability(cuda) if cuda else None
    if cc is None or top is None or cc <= top:
        return []
    stack = ", ".join(f"{k} {v}" for k, v in software.items() if k != "python")
    return [
        f"hardware={spec.hardware} has compute capability {spec.compute_capability} ({spec.gpu_model}, "
        f"sm_{cc[0]}{cc[1]}); impl={spec.impl} on stack=seed is the 2020 stack ({stack}) whose compilers and "
        f"libraries stop at sm_{top[0]}{top[1]}: CUDA >= {cuda_needed(cc)} is needed for sm_{cc[0]}{cc[1]}. "
        f"Use stack=today (the row's pinned code on today's software), or hardware=v100x8"
    ]


def _launched(spec: JobSpec) -> int | None:
    """How many ranks the command itself says it starts (None when it does not say)."""
    patterns = {
        "mpirun": r"(?:^|\s)(?:-np|-n|--np)\s+(\d+)",
        "horovodrun": r"(?:^|\s)(?:-np|--num-proc)[= ](\d+)",
        "torch.distributed.launch": r"--nproc_per_node[= ](\d+)|dist_train\.sh\s+\S+\s+(\d+)",
        "torchrun": r"--nproc_per_node[= ](\d+)",
        "mp.spawn": r"--num-gpus[= ](\d+)",
    }
    pat = patterns.get(str((spec.processes or {}).get("spawner")))
    m = re.search(pat, spec.command) if pat else None
    return int(next(g for g in m.groups() if g)) if m else None


def process_problems(spec: JobSpec) -> list[str]:
    """The row's ranks against its allocation: one task, `spec.gpus` GPUs, `spec.cpus` CPUs, on every backend."""
    p = spec.processes or {}
    if not p:
        return []
    spawner, ranks = str(p.get("spawner") or "single"), int(p["ranks"] if p.get("ranks") is not None else 1)
    if spawner not in SPAWNERS:
        return [f"impl.processes.spawner={spawner!r} for {spec.impl}; use one of {', '.join(SPAWNERS)}"]
    out = []
    if spawner == "single" and ranks != 1:
        out.append(f"impl.processes of {spec.impl}: spawner=single starts one process, not ranks={ranks}")
    launched = _launched(spec)
    over_hosts = spawner in _OVER_HOSTS and spec.nodes > 1 and "$LAUNCHER_MPI_HOSTS" in spec.command  # launcher/span.py
    if over_hosts and launched is not None:
        launched //= spec.nodes  # one mpirun (horovodrun) starts every node's ranks
    if spawner != "single" and launched is not None and launched != ranks:
        out.append(f"{spec.impl}'s command starts {launched} ranks with {spawner}, impl.processes.ranks says {ranks}")
    if spec.gpus and spawner != "single" and ranks > spec.gpus:
        out.append(
            f"{spec.impl} starts {ranks} ranks (one per GPU) and hardware {spec.hardware} gives {spec.gpus} GPUs"
        )
    if p.get("gpus") and spec.gpus and int(p["gpus"]) > spec.gpus:
        out.append(
            f"{spec.impl}'s code drives {p['gpus']} GPUs (fixed in its config) and hardware {spec.hardware} "
            f"gives {spec.gpus}"
        )
    if ranks > max(1, spec.cpus) and spec.gpus:
        out.append(f"{spec.impl} starts {ranks} processes and hardware {spec.hardware} gives {spec.cpus} CPUs")
    if spawner == "mpirun" and not over_hosts:
        slots = re.search(r"(?:-H|--host)\s+localhost:(\d+)", spec.command)
        no_slurm_ras = re.search(r"--mca\s+ras\s+\^slurm", spec.command)
        if "--oversubscribe" not in spec.command and not (slots and no_slurm_ras and int(slots.group(1)) >= ranks):
            out.append(
                f"{spec.impl}: `mpirun -np {ranks}` inside the one-task allocation every backend gives has 1 "
                f"slot under Slurm (OpenMPI counts tasks): add `--mca ras ^slurm -H localhost:{ranks}` to it"
            )
    return out


def describe(spec: JobSpec) -> list[str]:
    """Dry-run line: what the row asks for and how it uses it."""
    p = spec.processes or {}
    spawner, ranks = str(p.get("spawner") or "single"), int(p.get("ranks") or 1)
    how = (
        "one process drives every GPU" + (f" ({p['gpus']} fixed in its config)" if p.get("gpus") else "")
        if spawner == "single"
        else f"the row starts {ranks} rank{'s' if ranks != 1 else ''} itself ({spawner})"
    )
    cc = f", compute capability {spec.compute_capability}" if spec.compute_capability else ""
    return [
        f"allocation:      {spec.nodes} node x 1 task: {spec.gpus} GPU ({spec.gpu_model}{cc}), {spec.cpus} CPUs; {how}"
    ]
