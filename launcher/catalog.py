"""What the table needs to know about every configured row and hardware, read from conf/ in one place.

gather asks this module, never conf/ itself: labels, titles, published figures, reference hardware and
tolerances (conf/impl/*.yaml), GPUs of a named hardware (conf/hardware/*.yaml). The files are read as
plain YAML, without composing them: the keys read here are plain values, and gather runs on login nodes
where composing every row would cost more than the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from . import CONF_DIR
from .defaults import REFERENCE_HARDWARE, TOLERANCE

#: The seed table's row order, then our runnable row; any other row follows, alphabetically.
SEED_ORDER = ("detectron2", "mmdetection", "maskrcnn_benchmark", "tensorpack", "simpledet", "detectron", "matterport")
ORDER = SEED_ORDER + ("torchvision",)


@dataclass(frozen=True)
class RowInfo:
    impl: str
    label: str  # RST, as in the seed
    title: str  # plain text
    reference: float | None
    reference_hardware: str | None
    tolerance: float
    order: int
    commit: str | None = None  # the row's pinned upstream commit (impl.commit in its config)


def _load_yaml(text: str):
    """yaml.safe_load, with libyaml's loader where PyYAML has it: the rows' configs (patches, commands) took the
    pure-Python loader 0.17 s, paid at the end of every launch before its table."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def order_of(impl: str) -> int:
    return ORDER.index(impl) if impl in ORDER else len(ORDER)


@lru_cache(maxsize=4)
def load_rows(conf_dir: str | None = None) -> dict[str, RowInfo]:
    """Every row configured in conf/impl/ (or `conf_dir`), keyed by name."""
    rows: dict[str, RowInfo] = {}
    directory = Path(conf_dir) if conf_dir else CONF_DIR / "impl"
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = _load_yaml(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue  # a broken config is the config loader's error to report, not the table's
        name = data.get("name") or path.stem
        ref = data.get("reference")
        rows[name] = RowInfo(
            impl=name,
            label=data.get("label") or name,
            title=data.get("title") or name,
            reference=float(ref) if ref is not None else None,
            reference_hardware=data.get("reference_hardware", REFERENCE_HARDWARE) if ref is not None else None,
            tolerance=float(data.get("tolerance", TOLERANCE)),
            order=order_of(name),
            commit=None if data.get("commit") is None else str(data["commit"]),
        )
    return rows


def same_commit(a: object, b: object) -> bool:
    """Whether two spellings of a commit (full or abbreviated hashes) can name the same commit."""
    x, y = str(a).strip().lower(), str(b).strip().lower()
    return bool(x and y) and (x.startswith(y) or y.startswith(x))


@lru_cache(maxsize=64)
def hardware_gpus(hardware: str | None) -> int | None:
    """GPUs of a named hardware config (v100x8 -> 8), when conf/hardware has it."""
    if not hardware:
        return None
    try:
        data = _load_yaml((CONF_DIR / "hardware" / f"{hardware}.yaml").read_text())
        g = data.get("gpus")
        return int(g) if isinstance(g, (int, float)) else None
    except (OSError, ValueError, AttributeError, TypeError, yaml.YAMLError):
        return None
