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
from .defaults import REFERENCE_HARDWARE, TOLERANCE
from .backends import BackendConfig, available, backend_class
from .shellquote import DATA_RESOLVER, data, plain_args, shell_text, unmark


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
    # file to read: absolute (e.g. ${lx.run_dir:}/output/log.txt, where the row's own output option points) or
    # relative to the work dir (globs allowed, newest wins); None: the captured output (train.log)
    path: Optional[str] = None


@dataclass
class EnvironmentConfig:
    # launcher: the launcher's own Python (its bin dir first on PATH; rows that are the launcher's code)
    # host: the node's software as found on its PATH, unchanged (only when asked: impl.environment.kind=host)
    # venv | conda | container: the row's own environment (every seed row's default: conda)
    kind: str = "launcher"
    path: Optional[str] = None  # venv directory, conda env name/prefix, or container image
    runtime: str = "apptainer"  # container runtime: apptainer | singularity | pyxis
    recipe: Optional[str] = None  # build recipe under jobs/<row>/ (container definition / environment file)
    software: Dict[str, str] = field(default_factory=dict)  # the stack the published figure was measured with
    # kind=venv, managed=true: a venv the launcher makes on the node before the build, one per recipe under
    # <cache_dir>/envs/, reused with the build (path stays null); see launcher/node/venv.py
    managed: bool = False
    host_packages: bool = True  # a managed venv sees the launcher's Python packages (torch) behind its own
    requirements: List[str] = field(default_factory=list)  # pip specifiers installed into a managed venv
    # a pip constraints file under jobs/<row>/ that every pip of a managed venv (its making and the build's steps)
    # obeys: exact versions, so a recipe built from an empty cache gets the same packages any day
    constraints: Optional[str] = None
    # the build compiles CUDA extensions: toolchain checked before it, device code for every target arch proven after
    cuda_extensions: bool = False
    # extension modules the build makes from C++ alone (work-tree paths without the .cpython-*.so suffix, e.g.
    # mmdet/ops/utils/compiling_info): they hold no device code by design; every other module must
    host_only_extensions: List[str] = field(default_factory=list)
    check: bool = True  # on the node, before the command: compare `software` with what the environment has
    # shell lines that make the environment, run on a host with internet (python -m launcher.env create impl=...)
    create: List[str] = field(default_factory=list)


@dataclass
class DatasetConfig:
    """The COCO files a row's code reads, as a layout `python -m launcher.data stage` builds (launcher/data/stage.py)."""

    layout: Optional[str] = None  # coco2017 | coco2014 | simpledet; None: the row reads no staged data
    link: Optional[str] = None  # path in the work tree (relative to the checkout) made a symlink to the layout's root
    reads: List[str] = field(default_factory=list)  # relative to the layout's root: checked before submission
    later: List[str] = field(default_factory=list)  # read only after the window (final evaluation): warned about
    # files made from the layout by the row's own script, in its environment (SimpleDet's roidb)
    derive: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class WeightConfig:
    """One pretrained file a row loads, fetched into weights_dir by `python -m launcher.weights fetch`."""

    dest: str = MISSING  # path under weights_dir; the row's command points at ${weights_dir}/<dest>
    urls: List[str] = field(default_factory=list)  # tried in order
    sha256: Optional[str] = None  # published checksums, when there are any
    md5: Optional[str] = None
    md5_url: Optional[str] = None  # a published `.md5sum` file beside the download (Detectron's convention)
    sha256_prefix: Optional[str] = None  # a torch-hub style name carries the first hex digits of the sha256
    note: str = ""


@dataclass
class ProcessesConfig:
    """How the row's command uses the node it is given: one task, its own launcher spawns the ranks."""

    # single (one process drives every GPU) | mp.spawn | torch.distributed.launch | torchrun | mpirun | horovodrun
    spawner: str = "single"
    ranks: int = 1  # processes the command starts on the node
    # How its code spans nodes when hardware.nodes > 1 (launcher/span.py): torchrun | torch.distributed.launch |
    # detectron2 | mpirun | horovodrun; null: it runs on one node only, and `span_blocker` says why (plan refuses
    # nodes > 1)
    span: Optional[str] = None
    span_blocker: str = ""
    gpus: Optional[int] = None  # GPUs the row's code drives when its own config fixes them (SimpleDet: gpus=[0..7])


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
    # env variables taken by name from the submitting environment at run time, never stored (credentials)
    env_pass: List[str] = field(default_factory=list)
    patches: List[PatchConfig] = field(default_factory=list)  # the seed's own patches
    compat_patches: List[PatchConfig] = field(default_factory=list)  # what a non-seed stack needs (impl.stacks)
    setup: List[str] = field(default_factory=list)  # run before every command, in the work dir (data links)
    build: List[str] = field(default_factory=list)  # run once per recipe on the node, in the work dir
    environment: EnvironmentConfig = field(default_factory=EnvironmentConfig)
    paths: Dict[str, str] = field(default_factory=dict)  # inputs that must exist before submission
    dataset: DatasetConfig = field(default_factory=DatasetConfig)  # the staged COCO layout it reads
    weights: List[WeightConfig] = field(default_factory=list)  # pretrained files, local under weights_dir
    processes: ProcessesConfig = field(default_factory=ProcessesConfig)
    images_per_iter: int = MISSING
    reference: Optional[float] = None  # published img/s
    reference_hardware: Optional[str] = REFERENCE_HARDWARE
    tolerance: float = TOLERANCE
    log: LogConfig = field(default_factory=LogConfig)
    stop_when_covered: bool = True  # end the training once its log covers the window
    min_gpus: int = 1  # the seed rows only run on GPUs
    smoke: Dict[str, Any] = field(default_factory=dict)  # overrides applied at smoke scale (CPU-only)
    multinode: Dict[str, Any] = field(default_factory=dict)  # overrides applied when hardware.nodes > 1
    # overrides applied when hardware.ranks_per_node > 1, after smoke's (a smoke scale may set it: tensorpack's
    # CPU smoke takes horovodrun and a horovod build for 2 ranks, its one process the replicated trainer)
    multirank: Dict[str, Any] = field(default_factory=dict)
    options: Dict[str, Any] = field(default_factory=dict)  # row-specific knobs used by its command
    notes: str = ""
    # per software stack (conf/stack/<name>.yaml selects one): impl keys that replace the row's own under that
    # stack (smoke, env, options, paths merge key by key), e.g. stacks.today.compat_patches; see launcher/stack.py
    stacks: Dict[str, Any] = field(default_factory=dict)
    blocker: str = ""  # why the row cannot run (on the selected stack): it becomes a failed row saying so


@dataclass
class StackConfig:
    name: str = "seed"  # seed: the 2020 software the page used | today: the pinned code on today's packages
    description: str = ""


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
    compute_capability: Optional[str] = None  # e.g. "7.0" (V100); a CUDA 10 stack stops at 7.5
    # processes per node the row's own launcher starts (mp.spawn, torch.distributed.launch, torchrun): one per GPU,
    # 1 without GPUs; 2 on a CPU runs the multi-rank path (gloo, DDP) that 8 GPUs take, less NCCL
    ranks_per_node: int = "${lx.per_gpu:1,${hardware.gpus}}"  # type: ignore[assignment]
    gpu_type: Optional[str] = None  # the GPU's gres type name on Slurm (gpu:<type>:N), e.g. v100


@dataclass
class WindowConfig:
    start: int = 100
    end: int = 500


@dataclass
class DataConfig:
    coco_root: str = "/data/coco"  # COCO 2017: train2017/ val2017/ annotations/instances_{train,val}2017.json
    # COCO 2014: annotations/instances_{train2014,valminusminival2014,minival2014}.json, and train2014/ val2014/
    # images if you have them (else they are linked onto the 2017 images, the same files by image id)
    coco2014_root: Optional[str] = None
    stage_dir: str = MISSING  # where `python -m launcher.data stage` builds each row's layout (symlinks)


@dataclass
class LauncherConfig:
    impl: ImplConfig = MISSING
    hardware: HardwareConfig = MISSING
    backend: BackendConfig = MISSING  # a backend's own dataclass (conf/backend/<name>.yaml names it)
    stack: StackConfig = field(default_factory=StackConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    data: DataConfig = field(default_factory=DataConfig)
    dry_run: bool = False
    prepare_only: bool = False
    seed: int = 0
    scale: str = "auto"  # auto (smoke on a machine without GPUs) | full | smoke
    wait: bool = True
    rerun: Optional[str] = None  # failed | missing
    cache_dir: str = MISSING
    weights_dir: str = MISSING  # pretrained files (python -m launcher.weights fetch), weights.lock.json beside them
    envs_dir: str = MISSING  # the seed rows' own environments (python -m launcher.env create)
    cuda_toolkit: str = (
        "auto"  # builds of CUDA extensions: auto ($CUDA_HOME, nvcc on PATH, else index) | index | a path
    )


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
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        ).stdout
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


def _torchrun(gpus: Any, nodes: Any = 1) -> str:
    """The process launcher for our torchvision row: one process per GPU, one process on CPU; over several
    nodes torchrun with the node's rank and the master the backend gives it (launcher/span.py)."""
    n, nodes = int(gpus), int(nodes)
    if nodes > 1:
        from .span import span_args

        return f"torchrun {span_args('torchrun', nodes)} --nproc_per_node={max(1, n)}"
    return "python" if n <= 1 else f"torchrun --standalone --nproc_per_node={n}"


def _span(how: Any, nodes: Any) -> str:
    """`${lx.span:HOW,NODES}`: the arguments with which a row's own launcher spans NODES nodes (shell text
    reading the variables the node sets at run time); nothing on one node. launcher/span.py."""
    from .span import span_args

    return span_args(str(how), int(nodes))


@lru_cache(maxsize=1)
def detect_compute_capability() -> Optional[str]:
    """The first GPU's compute capability ("8.0"), from nvidia-smi; None when there is no GPU or the driver
    is too old to say (its `compute_cap` query field is recent)."""
    if detect_gpus() == 0 or shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.stdout.strip().splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else ""
    return first if first.replace(".", "").isdigit() else None


#: the run directory of the row being planned (set by plan.plan while it resolves the config)
PLANNING: Dict[str, Optional[str]] = {"run_dir": None}


RUN_DIR_UNPLANNED = "<run_dir>"


def _run_dir() -> str:
    """`${lx.run_dir:}`: the run directory of the row being planned, so a row can point its own output
    directory there (every run's log is its own). Known only while plan() resolves the config; elsewhere
    (`python -m launcher.parse` reading a row's defaults, `--cfg job --resolve`) it reads `<run_dir>`."""
    return PLANNING["run_dir"] or RUN_DIR_UNPLANNED


def _flag(flag: Any, value: Any) -> str:
    """`--flag VALUE`, or nothing when VALUE is unset; in a shell template VALUE stays data (quoted)."""
    return "" if unmark(value) in (None, "", "null") else f"{flag} {data(value)}"


def register_resolvers() -> None:
    """The `${lx.*}` resolvers.  Each returns data (a path, a number), quoted wherever it lands in a
    row's shell lines, except `lx.torchrun`, `lx.flag` and `lx.shell`, which return shell text
    (launcher/shellquote.py: how plan quotes every interpolated value)."""
    data_resolvers = {
        "lx.gpus": detect_gpus,
        "lx.gpu_model": detect_gpu_model,
        "lx.cpus": _cpus,
        "lx.mem_gb": _mem_gb,
        "lx.jobs": lambda: str(JOBS_DIR),
        # images per iteration of a per-GPU batch: per GPU x GPUs per node (1 on CPU) x nodes
        "lx.per_gpu": lambda per_gpu, gpus, nodes=1: int(per_gpu) * max(1, int(gpus)) * max(1, int(nodes)),
        "lx.dirname": lambda p: os.path.dirname(str(p).rstrip("/")) or "/",
        "lx.run_dir": _run_dir,
        "lx.gpu_cc": detect_compute_capability,
        "lx.cache": lambda: os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "launcher"
        ),
        "lx.unique_dir": unique_dir,  # hydra.run.dir / hydra.sweep.dir: a directory no other launch shares
    }
    resolvers = {name: plain_args(fn) for name, fn in data_resolvers.items()}
    resolvers.update(
        {
            "lx.torchrun": lambda gpus, nodes=1: _torchrun(unmark(gpus), unmark(nodes)),  # shell: a process launcher
            "lx.span": lambda how, nodes: _span(unmark(how), unmark(nodes)),  # shell: multi-node launcher arguments
            "lx.flag": _flag,  # shell: a flag, its value quoted
            "lx.shell": shell_text,  # shell: a config value its author says is shell text
            DATA_RESOLVER: data,  # what plan wraps around every other resolver call in a shell template
        }
    )
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register()
register_resolvers()
