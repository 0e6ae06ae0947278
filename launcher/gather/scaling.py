"""The scaling view: one row's throughput at several sizes (ranks, nodes, GPUs), computed from the result records.

A *series* is the ok runs of one row, recipe (hash), scale and GPU model; its *points* are the distinct
(nodes, GPUs, ranks) it ran at. A series with two points or more is shown: per point the mean img/s of its
runs, img/s per rank, and the efficiency against the smallest point (fewest ranks, then nodes):
``efficiency = (img/s per rank) / (the smallest point's img/s per rank)``; 100% is linear scaling.

Where a record does not say: `nodes` is the result's `nodes`, else provenance's `number_of_nodes`, else 1;
`ranks` is the result's `ranks`, else its GPUs, else 1 (one process per GPU, the seed rows' way).
"""

from __future__ import annotations

import math
from typing import Any, Iterable


def _int(v: Any) -> int | None:
    try:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        i = int(v)
        return i if i > 0 else None
    except (TypeError, ValueError):
        return None


def size_of(rec: dict) -> tuple[int, int, int]:
    """(nodes, gpus, ranks) of one run, by the rules above."""
    prov = rec.get("provenance") if isinstance(rec.get("provenance"), dict) else {}
    nodes = _int(rec.get("nodes")) or _int(prov.get("number_of_nodes")) or 1
    gpus = _int(rec.get("gpus")) or 0
    ranks = _int(rec.get("ranks")) or gpus or 1
    return nodes, gpus, ranks


def series(records: Iterable[dict]) -> list[dict]:
    """Every series with at least two sizes: {impl, title, recipe_hash, scale, gpu_model, points: [...]}."""
    groups: dict[tuple, dict[tuple, list[float]]] = {}
    meta: dict[tuple, dict] = {}
    for r in records:
        r = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}  # pandas' NaN
        t = r.get("throughput")
        if r.get("status") != "ok" or not isinstance(t, (int, float)) or not t == t or t <= 0:
            continue
        key = (r.get("impl"), r.get("recipe_hash"), r.get("scale"), r.get("gpu_model"))
        groups.setdefault(key, {}).setdefault(size_of(r), []).append(float(t))
        meta.setdefault(key, {"impl": r.get("impl"), "recipe_hash": r.get("recipe_hash"), "scale": r.get("scale"),
                              "gpu_model": r.get("gpu_model"), "label": r.get("label")})
    out = []
    for key, sizes in groups.items():
        if len(sizes) < 2:
            continue
        order = sorted(sizes, key=lambda s: (s[2], s[0], s[1]))
        points = []
        for nodes, gpus, ranks in order:
            vals = sizes[(nodes, gpus, ranks)]
            mean = math.fsum(vals) / len(vals)
            points.append({"nodes": nodes, "gpus": gpus, "ranks": ranks, "runs": len(vals), "throughput": mean,
                           "per_rank": mean / ranks})
        base = points[0]["per_rank"]
        for p in points:
            p["efficiency"] = p["per_rank"] / base
            p["speedup"] = p["throughput"] / points[0]["throughput"]
        out.append({**meta[key], "points": points})
    return sorted(out, key=lambda s: (str(s["impl"]), str(s["scale"]), str(s["recipe_hash"])))
