"""Could any node of the partition ever run this request? Asked before submission, so a row that no node
can satisfy is refused on the login node with the resource named, instead of sbatch's bare "Requested node
configuration is not available" (or a job that pends for ever, when the site accepts it anyway).

`partition_nodes` reads `sinfo -N -h -p P -o '%N|%c|%m|%G|%T|%f|%P'` (CPUs, memory in MB, gres, state,
features; verified on Slurm 22.05); `fit_problem` compares the request's CPUs, memory, GPUs (of the type,
when it names one) and constraint with every node and names what no node has, and the largest node;
`test_only` then asks Slurm itself with `sbatch --test-only` (no job is created), for what sinfo cannot show
(partition limits, QOS, accounts), with the same options submitit will use.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

_GRES = re.compile(r"^gpu(?::(?P<type>[^:(]+))?:(?P<count>\d+)")
_MEM = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)B?$", re.I)


@dataclass
class Node:
    name: str
    cpus: int
    mem_mb: int
    gpus: dict[str | None, int] = field(default_factory=dict)  # type (None: untyped) -> count
    features: set[str] = field(default_factory=set)
    state: str = ""

    def gpu_count(self, gpu_type: str | None) -> int:
        return self.gpus.get(gpu_type, 0) if gpu_type else sum(self.gpus.values())

    def text(self) -> str:
        gres = ",".join(f"gpu:{t}:{n}" if t else f"gpu:{n}" for t, n in self.gpus.items()) or "no GPUs"
        return f"{self.name} ({self.cpus} CPUs, {self.mem_mb // 1024} GB, {gres})"


def parse_gres(text: str) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for item in (text or "").split(","):
        m = _GRES.match(item.strip())
        if m:
            out[m.group("type")] = out.get(m.group("type"), 0) + int(m.group("count"))
    return out


def _int(text: str) -> int:
    m = re.match(r"\d+", text or "")
    return int(m.group()) if m else 0


@lru_cache(maxsize=16)
def partition_nodes(partition: str | None) -> tuple[str, tuple[Node, ...]] | None:
    """(partition, its nodes), the default partition when PARTITION is None; None when sinfo cannot say."""
    if shutil.which("sinfo") is None:
        return None
    cmd = ["sinfo", "-N", "-h", "-o", "%N|%c|%m|%G|%T|%f|%P"] + (["-p", partition] if partition else [])
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    rows = [line.split("|") for line in p.stdout.splitlines() if line.count("|") == 6]
    if partition is None:
        default = [r[6].rstrip("*") for r in rows if r[6].endswith("*")]
        partition = default[0] if default else (rows[0][6] if rows else "")
    nodes = {
        r[0]: Node(
            r[0],
            _int(r[1]),
            _int(r[2]),
            parse_gres(r[3]),
            set() if r[5] in ("(null)", "") else set(r[5].split(",")),
            r[4],
        )
        for r in rows
        if r[6].rstrip("*") == partition
    }
    return partition, tuple(nodes.values())


def mem_mb(value: Any) -> int | None:
    """sbatch's --mem as MB (None for 0, the whole node, or no value)."""
    m = _MEM.match(str(value or "").strip())
    if not m or float(m.group(1)) == 0:
        return None
    return int(float(m.group(1)) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[m.group(2).upper()])


def fit_problem(params: dict[str, Any], partition: str, nodes: tuple[Node, ...]) -> str | None:
    """Why no node of PARTITION can run a job with submitit PARAMS, naming the resource; None when one can."""
    if not nodes:
        return f"Slurm partition {partition!r} has no nodes (sinfo lists none): set backend.partition"
    gres = parse_gres(str(params.get("gres") or ""))
    gpu_type, gpus = next(iter(gres.items()), (None, 0))
    cpus = int(params.get("cpus_per_task") or 1) * int(params.get("ntasks_per_node") or 1)
    mem = mem_mb(params.get("mem"))
    wanted_features = (
        set(re.split(r"[&,]", params["constraint"]))
        if params.get("constraint") and re.fullmatch(r"[\w.-]+(?:[&,][\w.-]+)*", params["constraint"])
        else set()
    )
    checks = {
        "CPUs": lambda n: n.cpus >= cpus,
        "memory": lambda n: mem is None or n.mem_mb >= mem,
        "GPUs": lambda n: n.gpu_count(gpu_type) >= gpus,
        "features": lambda n: wanted_features <= n.features,
    }
    fitting = sum(1 for n in nodes if all(ok(n) for ok in checks.values()))
    wanted_nodes = int(params.get("nodes") or 1)
    if fitting >= wanted_nodes:
        return None
    if fitting:  # a row over several nodes (hardware.nodes): too few nodes that fit
        return (
            f"the row asks for {wanted_nodes} nodes and Slurm partition {partition!r} has {fitting} that can run "
            f"its part ({len(nodes)} in all): set hardware.nodes={fitting} or less, or use another partition"
        )
    asked = {
        "CPUs": f"{cpus} CPUs",
        "memory": f"{mem // 1024 if mem else 0} GB of memory",
        "GPUs": f"{gpus} GPUs" + (f" of gres type {gpu_type} (gpu:{gpu_type}:{gpus})" if gpu_type else ""),
        "features": f"features {'&'.join(sorted(wanted_features))}",
    }
    short = [asked[k] for k, ok in checks.items() if not any(ok(n) for n in nodes)] or [
        "that combination of " + ", ".join(asked[k] for k in ("CPUs", "memory", "GPUs"))
    ]
    largest = max(nodes, key=lambda n: (n.gpu_count(gpu_type), n.cpus, n.mem_mb))
    hint = (
        " (the nodes' gres names no such type: set backend.gres_type=untyped)"
        if gpu_type and not any(gpu_type in n.gpus for n in nodes)
        else ""
    )
    return (
        f"no node in Slurm partition {partition!r} can run this row as asked: it asks for {' and '.join(short)}"
        f"{hint}; the largest node is {largest.text()}. Ask for less (hardware.gpus, hardware.cpus, backend.mem) "
        f"or use another partition (backend.partition)"
    )


def sbatch_args(params: dict[str, Any]) -> list[str]:
    """The sbatch options submitit makes of PARAMS (its own renderer, so they cannot drift apart), without
    the output files and signal of a real submission."""
    from submitit.slurm.slurm import _make_sbatch_string

    with tempfile.TemporaryDirectory() as tmp:
        text = _make_sbatch_string(
            command="true",
            folder=f"{tmp}/%j",
            **{k: v for k, v in params.items() if k not in ("setup", "array_parallelism")},
        )
    skip = ("--output", "--error", "--signal", "--open-mode", "--job-name", "--array")
    return [
        line[len("#SBATCH ") :]
        for line in text.splitlines()
        if line.startswith("#SBATCH ") and not line[len("#SBATCH ") :].startswith(skip)
    ]


def test_only(params: dict[str, Any]) -> str | None:
    """Slurm's own answer without creating a job: None when it would schedule it, else its message."""
    try:
        p = subprocess.run(
            ["sbatch", "--test-only", *sbatch_args(params), "--wrap", "true"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return None if isinstance(e, subprocess.TimeoutExpired) else str(e)
    if p.returncode == 0:
        return None
    lines = [ln.replace("sbatch: error: ", "") for ln in p.stderr.strip().splitlines() if ln.strip()]
    return "; ".join(dict.fromkeys(lines)) or f"exit {p.returncode}"
