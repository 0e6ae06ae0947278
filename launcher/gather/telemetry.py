"""The table's optional hardware columns, from each run's `telemetry` (result.json; launcher/node/telemetry.py).

Per group of repeats: the largest GPU memory peak of its runs, and the mean over its runs of the total GPU
power and of the energy per image. Only runs whose GPUs were sampled over the window count; a group with
none leaves the columns empty, and a text table shows a column only when some row has a value.
"""

from __future__ import annotations

from typing import Any, Iterable

#: table field -> (column title, decimals)
COLUMNS = {
    "gpu_mem_peak_mib": ("GPU mem peak (MiB)", 0),
    "gpu_power_w": ("GPU power (W)", 0),
    "energy_j_per_img": ("Energy (J/img)", 1),
}


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def group_figures(runs: Iterable[dict]) -> dict[str, Any]:
    """The group's hardware figures (None where no run of it sampled a GPU over its window)."""
    tel = [r.get("telemetry") for r in runs]
    tel = [t for t in tel if isinstance(t, dict) and t.get("gpu_sampled")]
    peaks = [p for p in (_num(t.get("memory_used_peak_mib")) for t in tel) if p is not None]
    power = [p for p in (_num(t.get("power_mean_w")) for t in tel) if p is not None]
    energy = [e for e in (_num(t.get("energy_j_per_img")) for t in tel) if e is not None]
    return {
        "gpu_mem_peak_mib": max(peaks) if peaks else None,
        "gpu_power_w": sum(power) / len(power) if power else None,
        "energy_j_per_img": sum(energy) / len(energy) if energy else None,
        "telemetry_runs": len(tel),
    }


def cells(row: dict) -> dict[str, str]:
    """The columns' text for one table row ('' where empty)."""
    out = {}
    for key, (title, decimals) in COLUMNS.items():
        v = _num(row.get(key))
        out[title] = "" if v is None else f"{v:.{decimals}f}"
    return out
