"""The arithmetic of the table, each rule in one small function so the tests can pin its edges.

Repeats
    Runs of the same row, hardware, recipe hash and scale are one group. The group's figure is the
    mean, or, with at least five runs, the *olympic mean* (the mean without one lowest and one highest
    run), which keeps one disturbed run from moving the figure. The table also shows the sample
    standard deviation, min/max and the count.

Unstable
    A group is `unstable` when its runs disagree beyond their noise: its coefficient of variation
    (sample std / mean) exceeds ``max(UNSTABLE_CV, UNSTABLE_BOUND_FACTOR * e)``, where ``e`` is the
    largest relative error bound the parser attached to any of its figures (the log's rounding). The
    floor `UNSTABLE_CV` (2%) is above the run-to-run variation of a healthy GPU training run and well
    above every parser's error bound, so only a real disagreement trips it.

Verdict
    ``ratio = measured / published``. `reproduced` when ``|ratio - 1| <= tolerance`` (inclusive, with
    a 1e-9 allowance for binary floating point, so 52.5 against 50 at 5% is reproduced), else
    `faster` or `slower`. `n/a` when there is no published figure, when the run's hardware is not the
    published figure's hardware (then img/s per GPU is the comparable number), or when the run was not
    the full protocol (smoke scale).

Regression (history)
    The latest figure of a row is a regression when it falls below the mean of the runs before it
    (up to `RECENT` of them) by more than their noise: ``max(2 * sample std, 2 * e * mean,
    UNSTABLE_CV * mean)``.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

from ..defaults import TOLERANCE

UNSTABLE_CV = 0.02
UNSTABLE_BOUND_FACTOR = 3.0
OLYMPIC_MIN = 5
EDGE_EPS = 1e-9
RECENT = 5


def olympic_mean(values: Sequence[float]) -> float | None:
    """Mean without one lowest and one highest value; None below OLYMPIC_MIN values."""
    if len(values) < OLYMPIC_MIN:
        return None
    s = sorted(values)
    return math.fsum(s[1:-1]) / (len(s) - 2)


def summarize(values: Sequence[float], error_bounds: Sequence[float | None] = ()) -> dict:
    """Mean, std, min, max, count, olympic mean, the figure to show, its method, CV and instability."""
    n = len(values)
    if n == 0:
        return {
            "count": 0,
            "mean": None,
            "std": None,
            "min": None,
            "max": None,
            "olympic_mean": None,
            "throughput": None,
            "aggregate": None,
            "cv": None,
            "unstable": False,
        }
    mean = math.fsum(values) / n
    std = statistics.stdev(values) if n >= 2 else None
    oly = olympic_mean(values)
    cv = std / mean if std is not None and mean else None
    bound = max((e for e in error_bounds if e is not None), default=0.0)
    threshold = max(UNSTABLE_CV, UNSTABLE_BOUND_FACTOR * bound)
    return {
        "count": n,
        "mean": mean,
        "std": std,
        "min": min(values),
        "max": max(values),
        "olympic_mean": oly,
        "throughput": oly if oly is not None else mean,
        "aggregate": (
            "single run"
            if n == 1
            else f"olympic mean of {n} (drops 1 min, 1 max)"
            if oly is not None
            else f"mean of {n}"
        ),
        "cv": cv,
        "unstable": bool(cv is not None and cv > threshold),
        "unstable_threshold": threshold,
        "error_bound": bound or None,
    }


def verdict(
    measured: float | None,
    reference: float | None,
    tolerance: float | None,
    hardware: str | None = None,
    reference_hardware: str | None = None,
    scale: str | None = None,
) -> tuple[str | None, float | None, str | None]:
    """(verdict, ratio, why n/a). None verdict when nothing was measured."""
    if measured is None:
        return None, None, None
    if reference is None or not reference > 0:
        return "n/a", None, "no published figure"
    ratio = measured / reference
    if reference_hardware and hardware and hardware != reference_hardware:
        return "n/a", ratio, f"published on {reference_hardware}, measured on {hardware}: compare img/s per GPU"
    if scale and scale != "full":
        return "n/a", ratio, f"{scale} scale, not the published protocol"
    tol = TOLERANCE if tolerance is None else float(tolerance)
    if abs(ratio - 1.0) <= tol + EDGE_EPS:
        return "reproduced", ratio, None
    return ("faster" if ratio > 1 else "slower"), ratio, None


def regression(values: Sequence[float], latest: float, error_bound: float | None = None) -> tuple[bool, float | None]:
    """(is regression, noise) for `latest` against the runs before it (oldest first; the last RECENT used)."""
    recent = list(values)[-RECENT:]
    if not recent:
        return False, None
    mean = math.fsum(recent) / len(recent)
    std = statistics.stdev(recent) if len(recent) >= 2 else 0.0
    noise = max(2 * std, 2 * (error_bound or 0.0) * mean, UNSTABLE_CV * mean)
    return (mean - latest) > noise, noise


def decimals_for(value: float | None, rel_error: float | None) -> int:
    """Decimals a figure supports: none finer than its error bound (at most 2, at least 0)."""
    if value is None or not rel_error or rel_error <= 0:
        return 1
    abs_err = abs(value) * rel_error
    if abs_err <= 0:
        return 2
    return int(min(2, max(0, -math.floor(math.log10(abs_err)))))
