"""Software stacks: which software a seed row's pinned code runs on (`stack=seed` | `stack=today`).

`stack=seed` (the default) is each row as its conf/impl file configures it: the 2020 software the seed
page measured with (CUDA 10, Python 3.7, V100-class GPUs only).  `stack=today` is the same pinned
commit on today's package index, which needs changes: each row declares them as data under
`impl.stacks.today` in its own config, so a sweep `-m impl=a,b stack=today` gives every row its own:

    stacks:
      today:
        compat_patches: [...]      # source changes today's compilers/libraries need, applied after the
                                   # seed's own `patches`; both are in the recipe hash
        environment: {...}         # e.g. a launcher-managed venv that sees the host's torch
        build: [...]               # how to build it there
        min_gpus: 0                # it runs on CPU too (at smoke scale)
        blocker: "..."             # or: why it cannot run on this stack (the row fails, saying so)

Each key replaces the row's own value (`smoke`, `env`, `options` and `paths` are merged key by key);
the user's command-line overrides still win.  A seed row with no entry for the chosen stack cannot
run on it: it becomes a failed row whose reason says so.  Rows without a repository (torchvision)
are the launcher's own code on the launcher's own software whatever the stack: nothing is applied.
"""

from __future__ import annotations

import dataclasses

from omegaconf import DictConfig, OmegaConf

from .config import ImplConfig

DEFAULT = "seed"
#: impl keys whose stack values are merged into the row's, key by key (the others replace)
MERGED = ("smoke", "env", "options", "paths")
_NOT_PER_STACK = ("name", "stacks")


class StackError(ValueError):
    """A stack entry that cannot be applied; the message names the key."""


def stack_name(cfg: DictConfig) -> str:
    stack = cfg.get("stack")
    return str(stack.get("name") or DEFAULT) if stack is not None else DEFAULT


def _allowed() -> set[str]:
    return {f.name for f in dataclasses.fields(ImplConfig)} - set(_NOT_PER_STACK)


def apply_stack(cfg: DictConfig, keep: set[str] = frozenset()) -> DictConfig:
    """A detached copy of CFG with the row's entry for the chosen stack applied (see the module docstring).

    KEEP: dotted keys the user set on the command line; their values are restored after the stack's."""
    name = stack_name(cfg)
    impl = cfg.impl
    entry = (impl.get("stacks") or {}).get(name)
    if entry is None and (name == DEFAULT or not impl.get("repo")):
        return cfg
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))  # detached, still interpolating
    OmegaConf.set_struct(out, False)
    if entry is None:
        out.impl.blocker = (
            f"stack={name}: {impl.name} declares no such stack (no impl.stacks.{name} in "
            f"conf/impl/{impl.name}.yaml): nobody has made its pinned code run there yet"
        )
        return out
    allowed = _allowed()
    for key, value in entry.items():
        if key not in allowed:
            raise StackError(
                f"impl.stacks.{name}.{key} of {impl.name!r} is not an impl key; use one of {', '.join(sorted(allowed))}"
            )
        value = OmegaConf.to_container(value, resolve=False) if OmegaConf.is_config(value) else value
        if key in MERGED and isinstance(value, dict):
            for sub, v in value.items():
                out.impl[key][sub] = v
        else:
            out.impl[key] = value
    for key in keep:  # the user's overrides win over the stack's values
        if key.startswith("impl.") and OmegaConf.select(cfg, key, default="__missing__") != "__missing__":
            OmegaConf.update(out, key, OmegaConf.select(cfg, key), merge=False)
    return out
