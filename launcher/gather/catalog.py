"""The seed table's presentation: column names, RST link targets and substitution definitions, so the RST
table renders exactly as the seed's does. What each row is (label, published figure, tolerance) comes
from launcher/catalog.py, the one reader of conf/.
"""

from __future__ import annotations

#: The seed's column names.
COL_IMPL = "Implementation"
COL_THROUGHPUT = "Throughput (img/s)"

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
    (
        "D2",
        "https://github.com/facebookresearch/detectron2/raw/main/.github/Detectron2-Logo-Horz.svg?sanitize=true",
        (("height", "15pt"), ("target", "https://github.com/facebookresearch/detectron2/")),
    ),
    (
        "PT",
        "https://pytorch.org/assets/images/logo-icon.svg",
        (("width", "15pt"), ("height", "15pt"), ("target", "https://pytorch.org")),
    ),
    (
        "TF",
        "https://static.nvidiagrid.net/ngc/containers/tensorflow.png",
        (("width", "15pt"), ("height", "15pt"), ("target", "https://tensorflow.org")),
    ),
    (
        "mxnet",
        "https://github.com/dmlc/web-data/raw/master/mxnet/image/mxnet_favicon.png",
        (("width", "15pt"), ("height", "15pt"), ("target", "https://mxnet.apache.org/")),
    ),
    (
        "C2",
        "https://caffe2.ai/static/logo.svg",
        (("width", "15pt"), ("height", "15pt"), ("target", "https://caffe2.ai")),
    ),
)


def rst_footer(anonymous_refs: int = 1) -> str:
    """The link targets and substitution definitions the seed's labels need, placed below the table."""
    lines = [f".. _{name}: {url}" for name, url in SEED_TARGETS]
    lines += [f"__ {ANONYMOUS_TARGET}"] * anonymous_refs
    lines.append("")
    for name, url, options in SEED_SUBSTITUTIONS:
        lines.append(f".. |{name}| image:: {url}")
        lines += [f"   :{k}: {v}" for k, v in options]
    return "\n".join(lines) + "\n"
