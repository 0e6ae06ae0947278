"""The rows the table always shows: the seed's seven, in the seed's order, with the seed's labels.

Labels, titles, published figures, reference hardware and tolerances come from `conf/impl/*.yaml`
(the single place a row is described); the order and the RST link targets / substitution
definitions come from the seed page, so the RST table renders exactly as the seed's does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from .. import CONF_DIR

#: The seed table's row order, then our runnable row; any other row follows, alphabetically.
SEED_ORDER = ("detectron2", "mmdetection", "maskrcnn_benchmark", "tensorpack", "simpledet", "detectron",
              "matterport")
ORDER = SEED_ORDER + ("torchvision",)

#: The seed's column names.
COL_IMPL = "Implementation"
COL_THROUGHPUT = "Throughput (img/s)"

DEFAULT_TOLERANCE = 0.05

#: Named link targets the seed's labels refer to (`mmdetection_` ...), as on the seed page.
SEED_TARGETS = (
    ("maskrcnn-benchmark", "https://github.com/facebookresearch/maskrcnn-benchmark/"),
    ("tensorpack", "https://github.com/tensorpack/tensorpack/tree/master/examples/FasterRCNN"),
    ("mmdetection", "https://github.com/open-mmlab/mmdetection/"),
    ("simpledet", "https://github.com/TuSimple/simpledet/"),
    ("Detectron", "https://github.com/facebookresearch/Detectron"),
)
#: The seed's one anonymous reference (`matterport/Mask_RCNN`__) points here; one target per use.
ANONYMOUS_TARGET = "https://github.com/matterport/Mask_RCNN/"

#: The seed's substitution definitions (logos), with their options one per line as RST needs.
SEED_SUBSTITUTIONS = (
    ("D2", "https://github.com/facebookresearch/detectron2/raw/main/.github/Detectron2-Logo-Horz.svg?sanitize=true",
     (("height", "15pt"), ("target", "https://github.com/facebookresearch/detectron2/"))),
    ("PT", "https://pytorch.org/assets/images/logo-icon.svg",
     (("width", "15pt"), ("height", "15pt"), ("target", "https://pytorch.org"))),
    ("TF", "https://static.nvidiagrid.net/ngc/containers/tensorflow.png",
     (("width", "15pt"), ("height", "15pt"), ("target", "https://tensorflow.org"))),
    ("mxnet", "https://github.com/dmlc/web-data/raw/master/mxnet/image/mxnet_favicon.png",
     (("width", "15pt"), ("height", "15pt"), ("target", "https://mxnet.apache.org/"))),
    ("C2", "https://caffe2.ai/static/logo.svg",
     (("width", "15pt"), ("height", "15pt"), ("target", "https://caffe2.ai"))),
)


@dataclass(frozen=True)
class RowInfo:
    impl: str
    label: str  # RST, as in the seed
    title: str  # plain text
    reference: float | None
    reference_hardware: str | None
    tolerance: float
    order: int


def order_of(impl: str) -> int:
    return ORDER.index(impl) if impl in ORDER else len(ORDER)


@lru_cache(maxsize=4)
def load_rows(conf_dir: str | None = None) -> dict[str, RowInfo]:
    """Every row configured in conf/impl/, keyed by name. Interpolations are not resolved: the keys
    read here (label, title, reference, reference_hardware, tolerance) are plain values."""
    rows: dict[str, RowInfo] = {}
    directory = Path(conf_dir) if conf_dir else CONF_DIR / "impl"
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue  # a broken config is the config loader's error to report, not the table's
        name = data.get("name") or path.stem
        ref = data.get("reference")
        rows[name] = RowInfo(
            impl=name,
            label=data.get("label") or name,
            title=data.get("title") or name,
            reference=float(ref) if ref is not None else None,
            reference_hardware=data.get("reference_hardware", "v100x8") if ref is not None else None,
            tolerance=float(data.get("tolerance", DEFAULT_TOLERANCE)),
            order=order_of(name),
        )
    return rows


def rst_footer(anonymous_refs: int = 1) -> str:
    """The link targets and substitution definitions the seed's labels need, placed below the table."""
    lines = [f".. _{name}: {url}" for name, url in SEED_TARGETS]
    lines += [f"__ {ANONYMOUS_TARGET}"] * anonymous_refs
    lines.append("")
    for name, url, options in SEED_SUBSTITUTIONS:
        lines.append(f".. |{name}| image:: {url}")
        lines += [f"   :{k}: {v}" for k, v in options]
    return "\n".join(lines) + "\n"
