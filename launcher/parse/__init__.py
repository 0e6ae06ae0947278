"""Parse stage: one parser per log format, behind the `launcher.parse.base.LogParser` template.

`REGISTRY` is the one list of formats: a row's `log.format` (conf/impl/*.yaml) names one of its keys,
and every key has a stand-in writer in jobs/standin/ except `torchvision`, whose log is written by the
real jobs/torchvision/train.py (tests/test_parse_registry.py checks that the three agree).  Adding a
format means one module here, its line in `REGISTRY` and its stand-in writer.
"""

from __future__ import annotations

import datetime as dt
import importlib
from pathlib import Path

from .base import LogParser, Measurement, Progress
from .logfile import LogText, NotARegularFile
from .errors import BadRequest, ParseError, SeveralRuns, StaleLog, UnknownFormat, WindowNotCovered

#: format name -> "module:Class" (imported lazily so one broken parser cannot break the others)
REGISTRY: dict[str, str] = {
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
    return sorted(REGISTRY)


def get_parser(fmt: str) -> LogParser:
    try:
        target = REGISTRY[fmt]
    except KeyError:
        raise UnknownFormat(f"no parser for log format {fmt!r}; known formats: {', '.join(formats())}") from None
    mod, cls = target.split(":")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), cls)()


def earliest_start(fmt: str) -> int:
    """The smallest window start a log of format `fmt` can ever cover (what the plan checks against)."""
    return get_parser(fmt).earliest_start


def read_log(path: str | Path) -> LogText:
    """The log at `path`, read lazily line by line by the parsers (logfile.py): bounded memory, regular files
    only (NotARegularFile, a BadRequest, for a FIFO or a device; OSError for a missing file)."""
    return LogText(path)


def measure(
    fmt: str,
    text: str,
    window: tuple[int, int],
    images_per_iter: int,
    *,
    run: int | None = None,
    not_before: dt.datetime | None = None,
) -> Measurement:
    return get_parser(fmt).measure(text, tuple(window), images_per_iter, run=run, not_before=not_before)


__all__ = [
    "BadRequest",
    "LogParser",
    "Measurement",
    "ParseError",
    "Progress",
    "REGISTRY",
    "SeveralRuns",
    "StaleLog",
    "UnknownFormat",
    "WindowNotCovered",
    "earliest_start",
    "formats",
    "get_parser",
    "measure",
    "read_log",
    "LogText",
    "NotARegularFile",
]
