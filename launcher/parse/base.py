"""The one small interface every log parser implements.

A parser turns an implementation's own log into per-iteration timing records and computes the
average throughput over a window of iterations *exactly*: from what the implementation logs it
recovers the true mean step time over the window (a difference of running means weighted by their
counts, a harmonic mean of per-interval rates over equal-work intervals, a sum of per-epoch
times), never an average of whatever numbers appear.

Windows count completed iterations, 1-based, the way the detectron2 page says "iterations 100-500":
``window=(100, 500)`` is the 400 iterations after the 100th, up to and including the 500th.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def clean_lines(text: str) -> list[str]:
    """Split a captured log into lines: ANSI colours stripped, `\\r` and `\\b` progress redraws split."""
    text = ANSI_RE.sub("", text).replace("\x08", "")
    return [line.rstrip() for line in re.split(r"\r\n|\r|\n", text)]


class ParseError(ValueError):
    """A log that cannot give a figure."""


class UnknownFormat(ParseError):
    """Nothing in the log looks like the expected format."""


class WindowNotCovered(ParseError):
    """The log stops (or starts) before the window does: a run killed, still warming up, or the wrong file."""

    def __init__(self, fmt: str, window: tuple[int, int], last_iter: int | None, detail: str = ""):
        self.fmt, self.window, self.last_iter = fmt, tuple(window), last_iter
        seen = "no iteration" if last_iter is None else f"iteration {last_iter}"
        msg = (f"{fmt} log does not cover the window: it needs completed iterations "
               f"{window[0]}..{window[1]} and the last one seen is {seen}")
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


@dataclass
class Measurement:
    """A throughput figure and how it was computed. Never built for an uncovered window."""

    throughput: float  # images per second over the window
    window: tuple[int, int]  # the window actually used (completed iterations, 1-based, exclusive start)
    window_requested: tuple[int, int]
    images_per_iter: int
    method: str  # how the figure was computed, in words a reader can check against the log
    error_bound: float  # relative error the log's rounding/resolution allows (0.001 = 0.1%)
    mean_step_time: float  # seconds per iteration over the window
    last_iter: int  # last completed iteration seen in the log

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["window"] = list(self.window)
        d["window_requested"] = list(self.window_requested)
        return d


@dataclass
class Progress:
    """What a live display shows for a running job."""

    last_iter: int
    rate: float | None = None  # latest img/s the log supports, if any
    extra: dict[str, Any] = field(default_factory=dict)


class LogParser:
    """Base class: subclasses set `name` and implement `measure` (and usually `progress`)."""

    name: ClassVar[str] = ""
    #: file name patterns this parser reads when the row's config names no log file
    description: ClassVar[str] = ""

    def measure(self, text: str, window: tuple[int, int], images_per_iter: int) -> Measurement:
        raise NotImplementedError

    def progress(self, text: str) -> Progress | None:
        """Last completed iteration (1-based) and latest rate, or None when nothing is parsable yet."""
        return None

    def data_kind(self, text: str) -> str | None:
        """What the run trained on. The seed implementations only train on COCO."""
        return "coco"


def check_window(window: tuple[int, int]) -> tuple[int, int]:
    start, end = int(window[0]), int(window[1])
    if start < 0 or end <= start:
        raise ValueError(f"window must satisfy 0 <= start < end, got {start}..{end}")
    return start, end
