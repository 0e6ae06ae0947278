"""Parse stage: one parser per log format, behind `launcher.parse.base.LogParser`.

Adding a format means adding one module here and one line to `_PARSERS`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .base import LogParser, Measurement, ParseError, Progress, UnknownFormat, WindowNotCovered

# format name -> "module:Class" (imported lazily so one broken parser cannot break the others)
_PARSERS: dict[str, str] = {
    "torchvision": "torchvision:TorchvisionParser",
    "detectron2": "detectron2:Detectron2Parser",
    "mmdetection": "mmdetection:MmdetectionParser",
    "maskrcnn_benchmark": "maskrcnn_benchmark:MaskrcnnBenchmarkParser",
    "tensorpack": "tensorpack:TensorpackParser",
    "simpledet": "simpledet:SimpledetParser",
    "detectron": "detectron:DetectronParser",
    "matterport": "matterport:MatterportParser",
}


def formats() -> list[str]:
    return sorted(_PARSERS)


def get_parser(fmt: str) -> LogParser:
    try:
        target = _PARSERS[fmt]
    except KeyError:
        raise UnknownFormat(f"no parser for log format {fmt!r}; known formats: {', '.join(formats())}") from None
    mod, cls = target.split(":")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), cls)()


def read_log(path: str | Path) -> str:
    return Path(path).read_text(encoding="utf-8", errors="replace")


def measure(fmt: str, text: str, window: tuple[int, int], images_per_iter: int) -> Measurement:
    return get_parser(fmt).measure(text, tuple(window), int(images_per_iter))


__all__ = ["LogParser", "Measurement", "ParseError", "Progress", "UnknownFormat", "WindowNotCovered",
           "formats", "get_parser", "measure", "read_log"]
