"""STAND-IN machinery shared by the log writers: the time model, clocks, sinks, and what a run produced.

Nothing here trains anything; see formats.py.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

GREEN, RESET = "\x1b[32m", "\x1b[0m"


# --------------------------------------------------------------------------- time model and clocks


@dataclass
class TimeModel:
    """Per-iteration times: base x warm-up factor x noise, plus stalls."""

    base: float = 0.25  # seconds per iteration once warm
    warmup_iters: int = 0  # iterations whose time decays linearly from base*warmup_factor to base
    warmup_factor: float = 1.0
    noise: float = 0.0  # relative standard deviation (normal, clipped at 5% of base)
    stall_every: int = 0  # every N-th iteration stalls (data loader, GC), 0: never
    stall: float = 0.0  # extra seconds of a stall
    seed: int = 0

    def times(self, n: int) -> list[float]:
        rng = random.Random(self.seed)
        out = []
        for i in range(n):
            t = self.base
            if i < self.warmup_iters:
                t *= self.warmup_factor + (1.0 - self.warmup_factor) * i / max(1, self.warmup_iters)
            t *= max(0.05, 1.0 + self.noise * rng.gauss(0.0, 1.0)) if self.noise else 1.0
            if self.stall_every and (i + 1) % self.stall_every == 0:
                t += self.stall
            out.append(t)
        return out


class SimClock:
    """Simulated time: `run` advances it instantly (the --fast mode and the tests)."""

    def __init__(self, start: float):
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def run(self, seconds: float) -> None:
        self.t += seconds


class RealClock:
    """Real time: `run` sleeps, so a live display sees the log grow at the modelled pace."""

    def now(self) -> float:
        return time.time()

    def run(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


# --------------------------------------------------------------------------- where the lines go


class MemorySink:
    """Collects every stream in memory; `combined` is stdout and stderr interleaved as a pipe would capture them."""

    def __init__(self) -> None:
        self.streams: dict[str, io.StringIO] = {}
        self._combined = io.StringIO()

    def write(self, stream: str, text: str) -> None:
        self.streams.setdefault(stream, io.StringIO()).write(text)
        if stream in ("stdout", "stderr"):
            self._combined.write(text)

    def text(self, stream: str) -> str:
        return self.streams[stream].getvalue() if stream in self.streams else ""

    @property
    def combined(self) -> str:
        return self._combined.getvalue()


class FileSink:
    """Writes stdout/stderr to this process's streams and files relative to `root`, flushing every write.

    Files named in `appends` are opened for appending, as the implementation's own logger opens them
    (a rerun in the same directory then leaves two runs in one file); the others are written afresh."""

    def __init__(
        self, root: str | Path = ".", appends: tuple[str, ...] = (), place: Callable[[str], Path] | None = None
    ) -> None:
        self.root = Path(root)
        self.appends = set(appends)
        self.place = place  # where a stream's file goes when not under `root` (a row's own output dir)
        self._files: dict[str, io.TextIOBase] = {}

    def write(self, stream: str, text: str) -> None:
        if stream == "stdout":
            f = sys.stdout
        elif stream == "stderr":
            f = sys.stderr
        else:
            f = self._files.get(stream)
            if f is None:
                path = self.place(stream) if self.place else self.root / stream
                path.parent.mkdir(parents=True, exist_ok=True)
                mode = "a" if stream in self.appends or stream.endswith(".log.json") else "w"
                f = self._files[stream] = open(path, mode, encoding="utf-8")
        f.write(text)
        f.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()


# --------------------------------------------------------------------------- helpers


def fmt_td(seconds: float) -> str:
    return str(dt.timedelta(seconds=int(seconds)))  # '1 day, 2:03:04' past a day


def clock_stamp(t: float, fmt: str, tz_hours: float = 0.0, millis: bool = False) -> str:
    d = dt.datetime.fromtimestamp(t, dt.timezone(dt.timedelta(hours=tz_hours)))
    s = d.strftime(fmt)
    if millis:
        s += ",%03d" % int((t - math.floor(t)) * 1000)
    return s


def fake_losses(rng: random.Random, names: list[str], it: int) -> dict[str, float]:
    return {n: max(1e-4, (0.8 + 0.2 * rng.random()) * 1.5 / (1 + it / 200) / len(names)) for n in names}


def stderr_noise(opts: dict, sink, rng: random.Random, prob: float = 0.02) -> None:
    """Unrelated stderr noise (deprecation warnings, library chatter) as real captures have."""
    if opts.get("warnings", True) and rng.random() < prob:
        sink.write(
            "stderr",
            "/usr/lib/python3.7/site-packages/torch/nn/functional.py:2351: UserWarning: "
            "Default upsampling behavior when mode=bilinear is changed\n  warnings.warn(\n",
        )


@dataclass
class Simulation:
    """What a stand-in run produced: the sink (streams/files) and the truth."""

    fmt: str
    images_per_iter: int
    timed: list[float]  # per completed iteration (index c-1-first_iter), seconds as the implementation times them
    sink: object
    log_stream: str  # where the row's parser should read (a file path, or "combined" for the captured output)
    first_iter: int = 0  # iterations completed before this run started (a run resumed from a checkpoint)

    def true_throughput(self, window: tuple[int, int]) -> float:
        s, e = window
        if s < self.first_iter or e > self.first_iter + len(self.timed):
            raise ValueError(
                f"window {s}..{e} is outside this run's iterations {self.first_iter + 1}.."
                f"{self.first_iter + len(self.timed)}"
            )
        return self.images_per_iter * (e - s) / sum(self.timed[s - self.first_iter : e - self.first_iter])

    def log_text(self) -> str:
        if self.log_stream == "combined":
            return self.sink.combined
        return self.sink.text(self.log_stream)
