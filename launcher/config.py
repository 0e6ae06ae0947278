"""Structured configs: the schema every composed config is checked against, registered in Hydra's ConfigStore.

`conf/config.yaml` names `launcher_schema` first in its defaults list, so each config group
(impl, hardware, backend) is merged onto these dataclasses and a typo or a wrong type fails at
composition with a message that names the key. Each backend's schema is its own dataclass, beside
its code (launcher/backends/<name>), stored as `backend_<name>`: conf/backend/<name>.yaml names it
first in its defaults list.  Custom resolvers (``${lx.*:}``) used by the YAML
files are registered here too, since every entry point imports this module first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from . import JOBS_DIR
from .claim import unique_dir
from .backends import BackendConfig, available, backend_class


@dataclass
class PatchConfig:
    """One source patch. `kind=diff`: a unified diff file under jobs/<row>/ applied with `git apply`.
    `kind=replace`: a literal string replacement in every file matching `glob` (recursive)."""

    name: str = MISSING
    kind: str = "diff"  # diff | replace
    file: Optional[str] = None  # diff: path relative to jobs/<row>/
    glob: Optional[str] = None  # replace: e.g. "**/*.py"
    old: Optional[str] = None
    new: Optional[str] = None
    description: str = ""


@dataclass
class LogConfig:
    format: str = MISSING  # a parser in launcher/parse/
    path: Optional[str] = None  # file to read, relative to the work dir (globs allowed, newest wins); None: captured output


@dataclass
class EnvironmentConfig:
    kind: str = "host"  # host | venv | conda | container
    path: Optional[str] = None  # venv directory, conda env name/prefix, or container image
    runtime: str = "apptainer"  # container runtime: apptainer | singularity | pyxis
    recipe: Optional[str] = None  # build recipe under jobs/<row>/ (container definition / environment file)
    software: Dict[str, str] = field(default_factory=dict)  # the stack the published figure was measured with


@dataclass
class ImplConfig:
    name: str = MISSING
    label: str = MISSING  # the row's label in the seed's table
    title: str = MISSING  # plain name for Markdown/CSV
    framework: str = MISSING
    repo: Optional[str] = None
    commit: Optional[str] = None
    commit_note: str = ""
    workdir: str = "."
    command: str = MISSING
    env: Dict[str, str] = field(default_factory=dict)
    patches: List[PatchConfig] = field(default_factory=list)
    setup: List[str] = field(default_factory=list)  # run before every command, in the work dir (data links)
    build: List[str] = field(default_factory=list)  # run once per recipe on the node, in the work dir
    environment: EnvironmentConfig = field(default_factory=EnvironmentConfig)
    paths: Dict[str, str] = field(default_factory=dict)  # inputs that must exist before submission
    images_per_iter: int = MISSING
    reference: Optional[float] = None  # published img/s
    reference_hardware: Optional[str] = "v100x8"
    tolerance: float = 0.05
    log: LogConfig = field(default_factory=LogConfig)
    stop_when_covered: bool = True  # end the training once its log covers the window
    min_gpus: int = 1  # the seed rows only run on GPUs
    smoke: Dict[str, Any] = field(default_factory=dict)  # overrides applied at smoke scale (CPU-only)
    options: Dict[str, Any] = field(default_factory=dict)  # row-specific knobs used by its command
    notes: str = ""


@dataclass
class HardwareConfig:
    name: str = MISSING
    gpu: str = MISSING  # model, as nvidia-smi names it
    gpus: int = MISSING  # per node
    cpus: int = MISSING
    mem_gb: int = MISSING
    interconnect: str = ""
    nodes: int = 1
    time_limit_min: int = 60


@dataclass
class WindowConfig:
    start: int = 100
    end: int = 500


@dataclass
class DataConfig:
    coco_root: str = "/data/coco"


@dataclass
class LauncherConfig:
    impl: ImplConfig = MISSING
    hardware: HardwareConfig = MISSING
    backend: BackendConfig = MISSING  # a backend's own dataclass (conf/backend/<name>.yaml names it)
    window: WindowConfig = field(default_factory=WindowConfig)
    data: DataConfig = field(default_factory=DataConfig)
    dry_run: bool = False
    prepare_only: bool = False
    seed: int = 0
    scale: str = "auto"  # auto (smoke on a machine without GPUs) | full | smoke
    wait: bool = True
    rerun: Optional[str] = None  # failed | missing
    cache_dir: str = MISSING


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="launcher_schema", node=LauncherConfig)
    for name in available():
        cs.store(name=f"backend_{name}", node=backend_class(name).Config)


# ---------------------------------------------------------------- resolvers


@lru_cache(maxsize=1)
def detect_gpus() -> int:
    """GPUs on this machine, without importing torch: CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


@lru_cache(maxsize=1)
def detect_gpu_model() -> str:
    if detect_gpus() == 0 or shutil.which("nvidia-smi") is None:
        return "none"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    names = [n.strip() for n in out.splitlines() if n.strip()]
    return names[0] if names else "unknown"


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def _mem_gb() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 0


def _torchrun(gpus: Any) -> str:
    """The process launcher for our torchvision row: one process per GPU, one process on CPU."""
    n = int(gpus)
    return "python" if n <= 1 else f"torchrun --standalone --nproc_per_node={n}"


def register_resolvers() -> None:
    resolvers = {
        "lx.gpus": detect_gpus,
        "lx.gpu_model": detect_gpu_model,
        "lx.cpus": _cpus,
        "lx.mem_gb": _mem_gb,
        "lx.jobs": lambda: str(JOBS_DIR),
        "lx.torchrun": _torchrun,
        "lx.per_gpu": lambda per_gpu, gpus: int(per_gpu) * max(1, int(gpus)),
        "lx.dirname": lambda p: os.path.dirname(str(p).rstrip("/")) or "/",
        "lx.flag": lambda flag, value: "" if value in (None, "", "null") else f"{flag} {value}",
        "lx.cache": lambda: os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "launcher"),
        "lx.unique_dir": unique_dir,  # hydra.run.dir / hydra.sweep.dir: a directory no other launch shares
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register()
register_resolvers()
