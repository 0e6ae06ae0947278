"""Plan stage: resolve a composed Hydra config into a complete, serialisable `JobSpec`.

Everything a node needs is decided here, on the submit host: the command with every interpolation
resolved, the window (and the smoke-scale overrides on a machine without GPUs), the resources, which
log to read. Bad values are rejected with a message that names the key.

Shell lines (`SHELL_TEMPLATES`: the row's command, setup and build lines, the lines that make its
environment (`python -m launcher.env create`), the backend's setup lines) are resolved a second time
with every interpolated value quoted for the spot where it lands (launcher/shellquote.py), so a data
root with a space stays one argument and a `$(...)` in it stays text.  Chosen over a `quote` resolver
row authors would have to remember at every use, and over quoting the resolved text afterwards
(impossible: value and shell are one string by then).  The other fields (paths, env values, the work
dir) are plain values: whoever puts them in the script quotes them
(node/script.py), and the checks and the node use them as paths.
"""

from __future__ import annotations

import os

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .catalog import load_rows, same_commit
from .config import PLANNING
from .credentials import credential_problems
from .data.stage import StageError, dataset_for
from .rerun import MODES as RERUN_MODES
from .shellquote import QuoteError, resolve_templates
from .spec import JobSpec
from .stack import StackError, apply_stack, stack_name
from .parse import UnknownFormat, formats, get_parser
from .fit import arch_problems, process_problems
from .span import span_problems

SCALES = ("auto", "full", "smoke")
#: config keys that hold shell text (templates); every value they interpolate is quoted
SHELL_TEMPLATES = ("impl.command", "impl.setup", "impl.build", "impl.environment.create", "backend.setup")


class ConfigError(ValueError):
    """A config that cannot be planned; the message names the key and the way out."""


class CredentialError(ConfigError):
    """A config value holds a URL with a secret in it (launcher/credentials.py): refused, masked."""


def _validate(cfg: DictConfig) -> None:
    start, end = cfg.window.start, cfg.window.end
    if start < 0:
        raise ConfigError(f"window.start={start} must be >= 0 (completed iterations, 1-based)")
    if end <= start:
        raise ConfigError(
            f"window.start={start} must be less than window.end={end}: "
            "the window is the iterations after window.start up to and including window.end"
        )
    if cfg.scale not in SCALES:
        raise ConfigError(f"scale={cfg.scale!r} is not one of {', '.join(SCALES)}")
    if cfg.rerun not in (None, *RERUN_MODES):
        raise ConfigError(f"rerun={cfg.rerun!r} is not one of {', '.join(RERUN_MODES)}")
    _check_window_for_format(cfg)
    _check_hardware(cfg.hardware)
    if cfg.impl.repo is not None and not str(cfg.impl.repo).strip():
        raise ConfigError(
            f"impl.repo={cfg.impl.repo!r} is empty: give the repository's URL or path, or "
            "impl.repo=null for a row that runs from the launcher package itself"
        )


def _check_window_for_format(cfg: DictConfig) -> None:
    """A window that starts before the first iteration the row's log format can ever time is refused
    now, not after an hour in a queue; the parser says where its logs start covering."""
    fmt = cfg.impl.log.format
    try:
        first = get_parser(fmt).earliest_start
    except UnknownFormat:
        raise ConfigError(f"impl.log.format={fmt!r} has no parser; known formats: {', '.join(formats())}") from None
    if cfg.window.start < first:
        raise ConfigError(
            f"window.start={cfg.window.start} can never be measured for {cfg.impl.name}: a {fmt} log "
            f"times iterations from window.start={first} on (launcher/parse/{fmt}.py); "
            f"set window.start={first} or later"
        )


#: hardware keys and the least each may be (what a value below it would mean)
_HARDWARE_MIN = {
    "gpus": (0, "GPUs per node; 0 runs on CPU where the row allows it"),
    "cpus": (1, "CPU cores per node"),
    "mem_gb": (0, "memory per node; 0 leaves it to the scheduler"),
    "nodes": (1, "nodes per row"),
    "time_limit_min": (1, "minutes a row may run"),
    "ranks_per_node": (1, "processes per node the row's own launcher starts"),
}


def _check_hardware(hw: DictConfig) -> None:
    for key, (least, what) in _HARDWARE_MIN.items():
        value = hw[key]
        if value < least:
            raise ConfigError(
                f"hardware.{key}={value} must be at least {least} ({what}); "
                f"fix it in conf/hardware/{hw.name}.yaml or override hardware.{key}"
            )


def choose_scale(cfg: DictConfig) -> str:
    """`auto` means smoke scale on a machine without GPUs for rows that define one, full otherwise."""
    if cfg.scale == "auto":
        return "smoke" if int(cfg.hardware.gpus) == 0 and cfg.impl.smoke else "full"
    return cfg.scale


def override_keys(overrides: list[str]) -> set[str]:
    """Keys a user set on the command line (`a.b=1`, `+a.b=1`, `~a.b`), which smoke scale must not clobber."""
    return {o.lstrip("+~").split("=", 1)[0] for o in overrides}


def _apply_block(cfg: DictConfig, block: str, keep: set[str]) -> DictConfig:
    """A copy of `cfg` with the row's `impl.<block>` overrides (dotted keys) applied, except keys in `keep`."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))  # detached, still interpolating
    OmegaConf.set_struct(cfg, False)
    # unresolved: a value may refer to another of its values (`${impl.images_per_iter}`), resolved after all are set
    for key, value in OmegaConf.to_container(cfg.impl[block], resolve=False).items():
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            raise ConfigError(f"impl.{block} of {cfg.impl.name!r} overrides {key!r}, which is not a config key")
        if key not in keep:
            OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def apply_smoke(cfg: DictConfig, keep: set[str] = frozenset()) -> DictConfig:
    """A copy of `cfg` with the row's smoke overrides (dotted keys) applied, except keys in `keep`."""
    if not cfg.impl.smoke:
        raise ConfigError(f"scale=smoke: impl {cfg.impl.name!r} defines no smoke scale (impl.smoke is empty)")
    return _apply_block(cfg, "smoke", keep)


def apply_multirank(cfg: DictConfig, keep: set[str] = frozenset()) -> DictConfig:
    """`cfg` with the row's `impl.multirank` overrides applied when hardware.ranks_per_node > 1 (after smoke's:
    a smoke scale may set them), except keys in `keep`; unchanged otherwise."""
    if int(cfg.hardware.ranks_per_node) <= 1 or not cfg.impl.get("multirank"):
        return cfg
    return _apply_block(cfg, "multirank", keep)


def _resolve(cfg: DictConfig, run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """CFG resolved while `${lx.run_dir:}` knows RUN_DIR: (the values, the shell text of each of
    `SHELL_TEMPLATES` with every value it interpolates quoted).  A URL with a secret in it is refused."""
    PLANNING["run_dir"] = str(run_dir)  # for ${lx.run_dir:}, in both resolutions
    try:
        c: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[assignment]
        secrets = credential_problems(c)
        if secrets:
            raise CredentialError("; ".join(secrets))
        shell = resolve_templates(
            c,
            OmegaConf.to_container(cfg, resolve=False),
            SHELL_TEMPLATES,  # type: ignore[arg-type]
            collapse=("impl.command",),
        )
    finally:
        PLANNING["run_dir"] = None
    return c, shell


def _replaced_pin(impl: dict[str, Any], keep: set[str]) -> str | None:
    """The row's own pinned commit when the command line set impl.commit to another commit, else None.

    Running another tree than the pin (matterport: a tree of 3deaec5 rebuilt without the files the stored copy
    lacks, committed with its own hash) is the user's explicit choice; the run then says which pin it stands in
    for, and never claims the pin's hash (checkout.py clears it when both resolve to one commit)."""
    if "impl.commit" not in keep or impl.get("commit") is None:
        return None
    row = load_rows().get(str(impl["name"]))
    pin = row.commit if row else None
    return pin if pin and not same_commit(pin, impl["commit"]) else None


def _commit_note(impl: dict[str, Any], pin: str | None) -> str:
    note = str(impl.get("commit_note") or "")
    if not pin:
        return note
    said = f"impl.commit given on the command line in place of the row's pin {pin}: what runs is that commit's tree"
    return f"{note}; {said}" if note else said


def plan(
    cfg: DictConfig, run_dir: str | Path, sweep_dir: str | Path | None = None, overrides: list[str] | None = None
) -> JobSpec:
    """Resolve `cfg` into the JobSpec of one row (nothing is written or touched).

    `overrides` are the user's command-line overrides: at smoke scale they still win."""
    run_dir = Path(run_dir).resolve()
    try:
        keep = override_keys(overrides or [])
        cfg = apply_stack(cfg, keep)
        scale = choose_scale(cfg)
        if scale == "smoke":
            cfg = apply_smoke(cfg, keep)
        cfg = apply_multirank(cfg, keep)
        if int(cfg.hardware.nodes) > 1 and cfg.impl.multinode:
            from .span import apply_multinode

            cfg = apply_multinode(cfg, keep)
        _validate(cfg)
        c, shell = _resolve(cfg, run_dir)
        dataset = dataset_for(c["impl"].get("dataset") or {}, c["data"])
    except (StackError, StageError) as e:
        raise ConfigError(str(e)) from e
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot resolve the config: {e}") from e
    except QuoteError as e:
        raise ConfigError(f"cannot put a value into the job script: {e}") from e
    impl, hw, be = c["impl"], c["hardware"], dict(c["backend"])
    if "backend.setup" in shell:
        be["setup"] = shell["backend.setup"]
    environment = dict(impl["environment"])
    if "impl.environment.create" in shell:  # bash runs them (python -m launcher.env create)
        environment["create"] = shell["impl.environment.create"]
    weights_dir = str(c.get("weights_dir") or "")
    images_per_iter = _images_per_iter(impl, hw)
    pin = _replaced_pin(impl, keep)
    return JobSpec(
        impl=impl["name"],
        label=impl["label"],
        title=impl["title"],
        framework=impl["framework"],
        command=shell["impl.command"],
        images_per_iter=images_per_iter,
        window=[int(c["window"]["start"]), int(c["window"]["end"])],
        log_format=impl["log"]["format"],
        log_path=impl["log"]["path"],
        env={k: str(v) for k, v in impl["env"].items()},
        env_pass=[str(n) for n in impl.get("env_pass") or []],
        workdir=impl["workdir"],
        repo=impl["repo"],
        commit=None if impl["commit"] is None else str(impl["commit"]),
        commit_note=_commit_note(impl, pin),
        pinned_commit=pin,
        patches=impl["patches"],
        compat_patches=impl.get("compat_patches") or [],
        stack=stack_name(cfg),
        blocker=impl.get("blocker") or "",
        setup=shell["impl.setup"],
        build=shell["impl.build"],
        environment=environment,
        paths={k: str(v) for k, v in impl["paths"].items()},
        dataset=dataset,
        weights=[{**w, "path": str(Path(weights_dir) / w["dest"])} for w in impl.get("weights") or []],
        weights_dir=weights_dir,
        processes=dict(impl.get("processes") or {}),
        reference=impl["reference"],
        reference_hardware=impl["reference_hardware"],
        tolerance=float(impl["tolerance"]),
        stop_when_covered=bool(impl["stop_when_covered"]),
        min_gpus=int(impl["min_gpus"]),
        hardware=hw["name"],
        gpu_model=str(hw["gpu"]),
        gpu_type=hw.get("gpu_type") or None,
        compute_capability=None if hw.get("compute_capability") in (None, "") else str(hw["compute_capability"]),
        cuda_toolkit=str(c.get("cuda_toolkit") or "auto"),
        gpus=int(hw["gpus"]),
        cpus=int(hw["cpus"]),
        mem_gb=int(hw["mem_gb"]),
        nodes=int(hw["nodes"]),
        time_limit_min=int(hw["time_limit_min"]),
        backend=be["name"],
        backend_config=be,
        scale=scale,
        seed=int(c["seed"]),
        data_root=str(c["data"]["coco_root"]),
        run_dir=str(run_dir),
        sweep_dir=None if sweep_dir is None else str(Path(sweep_dir).resolve()),
    )


def _images_per_iter(impl: dict[str, Any], hw: dict[str, Any]) -> int:
    """The row's images per iteration, refused before anything runs unless a positive whole number: every
    figure is images over seconds, so 0 or a negative count can only print a wrong one."""
    value = impl["images_per_iter"]
    ok = (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())
    if ok and value <= 0 and int(hw["gpus"]) < int(impl["min_gpus"]):
        return int(value)  # a per-GPU batch on too few GPUs: runnable_problems names the clearer reason, the GPUs
    if not ok or value <= 0:
        raise ConfigError(
            f"impl.images_per_iter of {impl['name']!r} resolves to {value!r} on hardware "
            f"{hw['name']!r}: images per iteration must be a positive whole number (the figure is "
            "images over seconds); set impl.images_per_iter, or the row's per-GPU batch option"
        )
    return int(value)


def runnable_problems(spec: JobSpec) -> list[str]:
    """What stops this plan from running on its hardware (a dry run shows them; a real run refuses)."""
    problems: list[str] = []
    if spec.blocker:  # it becomes a failed row saying why (prepare refuses it), not a refusal to plan
        return problems
    problems += arch_problems(spec) + process_problems(spec) + span_problems(spec)
    if spec.gpus < spec.min_gpus:
        problems.append(
            f"{spec.impl} needs at least {spec.min_gpus} GPU and hardware {spec.hardware!r} has "
            f"{spec.gpus}: pick hardware=v100x8 (or a100x8, h100x8) for a GPU node, or set hardware.gpus"
        )
    if spec.images_per_iter <= 0:
        problems.append(f"images per iteration of {spec.impl} resolves to {spec.images_per_iter} on {spec.hardware}")
    unset = [n for n in spec.env_pass or [] if n not in os.environ]
    if unset:
        problems.append(
            f"impl.env_pass names {', '.join(unset)}, not set in this environment: export "
            f"{'it' if len(unset) == 1 else 'them'} before launching (the value is passed at run time, "
            "never written)"
        )
    return problems
