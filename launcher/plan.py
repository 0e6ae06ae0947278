"""Plan stage: resolve a composed Hydra config into a complete, serialisable `JobSpec`.

Everything a node needs is decided here, on the submit host: the command with every interpolation
resolved, the window (and the smoke-scale overrides on a machine without GPUs), the resources, which
log to read. Bad values are rejected with a message that names the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .rerun import MODES as RERUN_MODES
from .spec import JobSpec

SCALES = ("auto", "full", "smoke")


class ConfigError(ValueError):
    """A config that cannot be planned; the message names the key and the way out."""


def _validate(cfg: DictConfig) -> None:
    start, end = cfg.window.start, cfg.window.end
    if start < 0:
        raise ConfigError(f"window.start={start} must be >= 0 (completed iterations, 1-based)")
    if end <= start:
        raise ConfigError(f"window.start={start} must be less than window.end={end}: "
                          "the window is the iterations after window.start up to and including window.end")
    if cfg.scale not in SCALES:
        raise ConfigError(f"scale={cfg.scale!r} is not one of {', '.join(SCALES)}")
    if cfg.rerun not in (None, *RERUN_MODES):
        raise ConfigError(f"rerun={cfg.rerun!r} is not one of {', '.join(RERUN_MODES)}")


def choose_scale(cfg: DictConfig) -> str:
    """`auto` means smoke scale on a machine without GPUs for rows that define one, full otherwise."""
    if cfg.scale == "auto":
        return "smoke" if int(cfg.hardware.gpus) == 0 and cfg.impl.smoke else "full"
    return cfg.scale


def override_keys(overrides: list[str]) -> set[str]:
    """Keys a user set on the command line (`a.b=1`, `+a.b=1`, `~a.b`), which smoke scale must not clobber."""
    return {o.lstrip("+~").split("=", 1)[0] for o in overrides}


def apply_smoke(cfg: DictConfig, keep: set[str] = frozenset()) -> DictConfig:
    """A copy of `cfg` with the row's smoke overrides (dotted keys) applied, except keys in `keep`."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))  # detached, still interpolating
    OmegaConf.set_struct(cfg, False)
    if not cfg.impl.smoke:
        raise ConfigError(f"scale=smoke: impl {cfg.impl.name!r} defines no smoke scale (impl.smoke is empty)")
    for key, value in cfg.impl.smoke.items():
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            raise ConfigError(f"impl.smoke of {cfg.impl.name!r} overrides {key!r}, which is not a config key")
        if key not in keep:
            OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def plan(cfg: DictConfig, run_dir: str | Path, sweep_dir: str | Path | None = None,
         overrides: list[str] | None = None) -> JobSpec:
    """Resolve `cfg` into the JobSpec of one row (nothing is written or touched).

    `overrides` are the user's command-line overrides: at smoke scale they still win."""
    try:
        scale = choose_scale(cfg)
        if scale == "smoke":
            cfg = apply_smoke(cfg, override_keys(overrides or []))
        _validate(cfg)
        c: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[assignment]
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot resolve the config: {e}") from e
    impl, hw, be = c["impl"], c["hardware"], c["backend"]
    images_per_iter = _images_per_iter(impl, hw)
    return JobSpec(
        impl=impl["name"],
        label=impl["label"],
        title=impl["title"],
        framework=impl["framework"],
        command=" ".join(str(impl["command"]).split()),
        images_per_iter=images_per_iter,
        window=[int(c["window"]["start"]), int(c["window"]["end"])],
        log_format=impl["log"]["format"],
        log_path=impl["log"]["path"],
        env={k: str(v) for k, v in impl["env"].items()},
        workdir=impl["workdir"],
        repo=impl["repo"],
        commit=None if impl["commit"] is None else str(impl["commit"]),
        commit_note=impl["commit_note"],
        patches=impl["patches"],
        setup=list(impl["setup"]),
        build=list(impl["build"]),
        environment=impl["environment"],
        paths={k: str(v) for k, v in impl["paths"].items()},
        reference=impl["reference"],
        reference_hardware=impl["reference_hardware"],
        tolerance=float(impl["tolerance"]),
        stop_when_covered=bool(impl["stop_when_covered"]),
        min_gpus=int(impl["min_gpus"]),
        hardware=hw["name"],
        gpu_model=str(hw["gpu"]),
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
        run_dir=str(Path(run_dir).resolve()),
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
        raise ConfigError(f"impl.images_per_iter of {impl['name']!r} resolves to {value!r} on hardware "
                          f"{hw['name']!r}: images per iteration must be a positive whole number (the figure is "
                          "images over seconds); set impl.images_per_iter, or the row's per-GPU batch option")
    return int(value)


def runnable_problems(spec: JobSpec) -> list[str]:
    """What stops this plan from running on its hardware (a dry run shows them; a real run refuses)."""
    problems = []
    if spec.gpus < spec.min_gpus:
        problems.append(f"{spec.impl} needs at least {spec.min_gpus} GPU and hardware {spec.hardware!r} has "
                        f"{spec.gpus}: pick hardware=v100x8 (or a100x8, h100x8) for a GPU node, or set hardware.gpus")
    if spec.images_per_iter <= 0:
        problems.append(f"images per iteration of {spec.impl} resolves to {spec.images_per_iter} on {spec.hardware}")
    return problems
