"""Shared by the small command-line tools that act on rows outside a run (`python -m launcher.data stage`,
`python -m launcher.weights fetch`, `python -m launcher.env create`): compose a row's config from the same
Hydra overrides `python -m launcher` takes, and plan it, without a run directory.

They plan at full scale unless told otherwise (`scale=smoke`): they run on a login node or a workstation
without GPUs, where `scale=auto` would pick a row's CPU smoke scale, whose files are not the cluster run's
(detectron2's and mmdetection's smoke scales load no pretrained file, so `weights fetch` would skip theirs)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hydra import compose as hcompose
from hydra import initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from . import CONF_DIR
from . import config as _config  # noqa: F401  (schema and resolvers)
from .plan import plan
from .spec import JobSpec


def seed_rows() -> list[str]:
    """The rows with a repository of their own (the seed page's rows), by name."""
    out = []
    for p in sorted((CONF_DIR / "impl").glob("*.yaml")):
        if OmegaConf.load(p).get("repo"):
            out.append(p.stem)
    return out


def compose(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return hcompose("config", overrides=list(overrides))


def plan_rows(overrides: list[str]) -> list[tuple[DictConfig, JobSpec]]:
    """(config, spec) of each row named by `impl=a,b` in OVERRIDES (every seed row when none is named)."""
    impls = [o.split("=", 1)[1] for o in overrides if o.startswith("impl=")]
    rest = [o for o in overrides if not o.startswith("impl=")]
    if not any(o.lstrip("+").startswith("scale=") for o in rest):
        rest.append("scale=full")  # what the rows need on the cluster, whatever this host has (see above)
    names = [n for n in (impls[-1].split(",") if impls else seed_rows()) if n]
    run_dir = Path(tempfile.gettempdir()) / "launcher-cli-plan"  # never created: only commands mention it
    out = []
    for name in names:
        cfg = compose([f"impl={name}", *rest])
        out.append((cfg, plan(cfg, run_dir, overrides=rest)))
    return out
