"""The job spec: everything a node needs to run one row, with every interpolation resolved.

Plan builds it from the composed config, prepare fills in the checkout, and it travels to the node
as `spec.json` in the run directory, so the node never needs Hydra or the config files.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .defaults import TOLERANCE
from .rundir import SPEC_FILE, atomic_write_json


@dataclass
class JobSpec:
    # the row
    impl: str
    label: str
    title: str
    framework: str
    command: str
    images_per_iter: int
    window: list[int]  # [start, end]: completed iterations, 1-based
    log_format: str
    log_path: str | None = None  # relative to the work dir; None = the captured output (train.log)
    env: dict[str, str] = field(default_factory=dict)
    env_pass: list[str] = field(default_factory=list)  # names only: taken from the environment at run time
    workdir: str = "."  # relative to the prepared checkout (or to the run dir when there is no repo)
    repo: str | None = None
    commit: str | None = None  # as configured (tag, abbreviated or full hash)
    commit_note: str = ""
    # the row's configured commit when impl.commit was set to another one on the command line (plan.py)
    pinned_commit: str | None = None
    patches: list[dict[str, Any]] = field(default_factory=list)  # the seed's own
    compat_patches: list[dict[str, Any]] = field(default_factory=list)  # what the stack needs, applied after
    stack: str = "seed"  # seed | today (conf/stack/)
    blocker: str = ""  # why this row cannot run on its stack (prepare refuses it with this reason)
    setup: list[str] = field(default_factory=list)
    build: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)  # its staged COCO layout (launcher/data/stage.py)
    weights: list[dict[str, Any]] = field(default_factory=list)  # impl.weights, each with its local `path`
    weights_dir: str = ""
    processes: dict[str, Any] = field(default_factory=dict)  # spawner, ranks (launcher/fit.py)
    reference: float | None = None
    reference_hardware: str | None = None
    tolerance: float = TOLERANCE
    stop_when_covered: bool = True
    min_gpus: int = 1
    # where and how
    hardware: str = "local"
    gpu_model: str = ""
    gpu_type: str | None = None  # the Slurm gres type name (gpu:<type>:N)
    compute_capability: str | None = None  # "7.0": what the row's CUDA must be able to target
    cuda_toolkit: str = "auto"  # which CUDA toolkit compiles its extensions (launcher/node/toolchain.py)
    gpus: int = 0
    cpus: int = 1
    mem_gb: int = 0
    nodes: int = 1
    time_limit_min: int = 60
    backend: str = "local"
    backend_config: dict[str, Any] = field(default_factory=dict)
    scale: str = "full"  # full | smoke
    seed: int = 0
    data_root: str = ""
    run_dir: str = ""
    sweep_dir: str | None = None
    # filled by prepare (submit host)
    checkout_dir: str | None = None
    commit_full: str | None = None
    recipe_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def exec_dir(self) -> Path:
        """Where the command runs: the prepared checkout's work dir, or the run dir for repo-less rows."""
        base = Path(self.checkout_dir) if self.checkout_dir else Path(self.run_dir)
        return (base / self.workdir).resolve()

    def save(self, run_dir: str | Path | None = None) -> Path:
        path = Path(run_dir or self.run_dir) / SPEC_FILE
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> "JobSpec":
        path = Path(path)
        if path.is_dir():
            path = path / SPEC_FILE
        from .rundir import read_small  # a regular file of sane size only: never blocks on a planted FIFO

        return cls.from_dict(json.loads(read_small(path).decode("utf-8")))
