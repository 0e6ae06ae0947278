"""The scaling view: how each row's throughput grows with its ranks and nodes (weak / strong scaling studies).

    python -m launcher -m impl=torchvision hardware.nodes=1,2          # or hardware.gpus=1,2,4,8 / ranks per node
    python -m launcher.gather outputs/sweeps/<sweep> --view scaling [--plot scaling.png]

One line per row, recipe and size: the ok runs of the same implementation, hardware group, recipe hash, scale and
stack and commit, at one (nodes, ranks) size, their throughput averaged (`n` runs; launcher/gather/stats.py's mean).

* `img/s`: the row's figure (every rank's images: the figure counts the global batch).
* `img/s per rank`: img/s / ranks, ranks = ranks per node x nodes as result.json records them.
* `speedup`: img/s / img/s of the smallest size of the same row and recipe (fewest ranks, then fewest nodes).
* `efficiency`: speedup / (ranks / the smallest size's ranks), i.e. img/s per rank against the smallest run's.
  Above 1 is flagged (`above linear`): more than linear scaling usually means the smallest run was held back
  (a throttled or shared GPU, a data loader starved at one rank), not that adding ranks made each faster.

A result from before `nodes`/`ranks` were recorded counts as one node, and as many ranks as GPUs (1 on CPU).
The seed's table stays the default view of `python -m launcher.gather`.
"""

from __future__ import annotations

import io
import json
import math
import os
from typing import Any

import pandas as pd

#: what makes runs comparable along a scaling curve (the size itself varies). Not the recipe hash: it covers the
#: command, whose node arguments (torchrun --nnodes ...) differ with the size; the code is the commit.
CURVE_KEY = ("impl", "hardware", "commit", "scale", "stack")
COLUMNS = (
    "impl",
    "hardware",
    "scale",
    "nodes",
    "ranks",
    "runs",
    "throughput",
    "per_rank",
    "speedup",
    "efficiency",
    "flag",
    "base",
    "hosts",
    "commit",
    "stack",
    "label",
)
HEADERS = (
    "Implementation",
    "Hardware",
    "Scale",
    "Nodes",
    "Ranks",
    "Runs",
    "img/s",
    "img/s per rank",
    "Speedup",
    "Efficiency",
    "Note",
    "Against",
    "Hosts",
)
ABOVE_LINEAR = 1.0 + 1e-9


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _ranks(rec: dict) -> int:
    r = _num(rec.get("ranks"))
    if r and r >= 1:
        return int(r)
    nodes = int(_num(rec.get("nodes")) or 1)
    return max(1, int(_num(rec.get("gpus")) or 0)) * nodes


def scaling_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The scaling view of gather()'s per-run frame: one row per (curve, size), smallest size first."""
    if runs.empty or "status" not in runs.columns:
        return pd.DataFrame(columns=COLUMNS)
    sizes: dict[tuple, dict[tuple[int, int], list[dict]]] = {}
    for rec in runs.to_dict("records"):
        if rec.get("status") != "ok" or _num(rec.get("throughput")) is None:
            continue
        curve = tuple(
            None if (isinstance(rec.get(k), float) and pd.isna(rec.get(k))) else rec.get(k) for k in CURVE_KEY
        )
        size = (_ranks(rec), int(_num(rec.get("nodes")) or 1))
        sizes.setdefault(curve, {}).setdefault(size, []).append(rec)
    out = []
    for curve, by_size in sizes.items():
        ordered = sorted(by_size)
        base_ranks, base_nodes = ordered[0]
        base_tp = sum(float(r["throughput"]) for r in by_size[ordered[0]]) / len(by_size[ordered[0]])
        for ranks, nodes in ordered:
            g = by_size[(ranks, nodes)]
            tp = sum(float(r["throughput"]) for r in g) / len(g)
            speedup = tp / base_tp
            eff = speedup / (ranks / base_ranks)
            hosts: list[str] = []
            for r in g:
                for h in r.get("hosts") if isinstance(r.get("hosts"), list) else [r.get("host")]:
                    if h and h not in hosts:
                        hosts.append(str(h))
            out.append(
                {
                    "impl": curve[0],
                    "hardware": curve[1],
                    "scale": curve[3],
                    "nodes": nodes,
                    "ranks": ranks,
                    "runs": len(g),
                    "throughput": tp,
                    "per_rank": tp / ranks,
                    "speedup": speedup,
                    "efficiency": eff,
                    "flag": "above linear: the smallest run may have been held back" if eff > ABOVE_LINEAR else "",
                    "base": f"{base_ranks} rank{'s' if base_ranks != 1 else ''} on {base_nodes} node"
                    f"{'s' if base_nodes != 1 else ''}",
                    "hosts": ", ".join(hosts),
                    "commit": curve[2],
                    "stack": curve[4],
                    "label": next((r.get("label") for r in g if r.get("label")), None),
                }
            )
    return pd.DataFrame(out, columns=COLUMNS)


def series(records) -> list[dict]:
    """The curves with two sizes or more, for the HTML report: {impl, label, hardware, scale, commit, stack,
    points: [{nodes, ranks, runs, throughput, per_rank, speedup, efficiency, flag}]} (scaling_table's figures)."""
    table = scaling_table(pd.DataFrame(list(records)))
    out = []
    for _, g in table.groupby(["impl", "hardware", "commit", "scale", "stack"], dropna=False, sort=False):
        if len(g) < 2:
            continue
        first = g.iloc[0]
        out.append(
            {
                "impl": first["impl"],
                "label": first["label"],
                "hardware": first["hardware"],
                "scale": first["scale"],
                "commit": first["commit"],
                "stack": first["stack"],
                "points": g[
                    ["nodes", "ranks", "runs", "throughput", "per_rank", "speedup", "efficiency", "flag"]
                ].to_dict("records"),
            }
        )
    return out


def _cells(r: dict) -> list[str]:
    return [
        str(r["impl"]),
        str(r["hardware"]),
        str(r["scale"] or ""),
        str(r["nodes"]),
        str(r["ranks"]),
        str(r["runs"]),
        f"{r['throughput']:.3g}",
        f"{r['per_rank']:.3g}",
        f"{r['speedup']:.2f}x",
        f"{r['efficiency']:.0%}",
        r["flag"],
        r["base"],
        r["hosts"],
    ]


def render_scaling(table: pd.DataFrame, fmt: str = "rst") -> str:
    """The scaling table as text (rst, md, console), csv or json."""
    records = table.to_dict("records")
    if fmt == "json":
        return json.dumps(records, indent=2, default=str) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        table.to_csv(buf, index=False, lineterminator="\n")
        return buf.getvalue()
    if not records:
        return "No scaling to show: no ok runs (a scaling sweep: -m hardware.nodes=1,2 or hardware.gpus=1,2,4,8).\n"
    rows = [_cells(r) for r in records]
    widths = [max(len(h), *(len(c[i]) for c in rows)) for i, h in enumerate(HEADERS)]
    if fmt == "md":
        lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
        lines += ["| " + " | ".join(c) + " |" for c in rows]
    else:  # rst grid-less simple table, readable on a console as well
        rule = "  ".join("=" * w for w in widths)
        lines = [rule, "  ".join(h.ljust(w) for h, w in zip(HEADERS, widths)), rule]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        lines.append(rule)
    note = (
        "Efficiency: img/s per rank against the smallest run of the same row and recipe (launcher/gather/scaling.py); "
        "above 100% is flagged."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"


def plot_scaling(table: pd.DataFrame, path: str | os.PathLike) -> str:
    """img/s against ranks per row and recipe, with the linear line from each curve's smallest run; PNG."""
    from .plot import _plt

    plt = _plt()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    for (impl, hw, scale), g in table.groupby(["impl", "hardware", "scale"], dropna=False, sort=False):
        g = g.sort_values(["ranks", "nodes"])
        label = f"{impl} ({hw}{', ' + scale if isinstance(scale, str) and scale != 'full' else ''})"
        line = ax.plot(g["ranks"], g["throughput"], marker="o", label=label)[0]
        base = g.iloc[0]
        ax.plot(g["ranks"], base["throughput"] / base["ranks"] * g["ranks"], linestyle=":", color=line.get_color())
        for _, r in g.iterrows():
            if r["nodes"] > 1:
                ax.annotate(
                    f"{r['nodes']} nodes",
                    (r["ranks"], r["throughput"]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(4, -10),
                )
        ax2.plot(g["ranks"], g["efficiency"], marker="o", color=line.get_color(), label=label)
    ax.set_xlabel("ranks (ranks per node x nodes)")
    ax.set_ylabel("throughput (img/s)")
    ax.set_title("scaling: measured (solid) and linear from the smallest run (dotted)")
    ax2.axhline(1.0, color="black", linewidth=0.8)
    ax2.set_xlabel("ranks")
    ax2.set_ylabel("efficiency (img/s per rank / smallest run's)")
    ax2.set_title("efficiency (above 1: flagged)")
    for a in (ax, ax2):
        if not table.empty:
            a.set_xticks(sorted(set(int(x) for x in table["ranks"])))
        a.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return path


def has_curve(table: pd.DataFrame) -> bool:
    """Whether some row was measured at two sizes or more (a sweep over nodes or ranks)."""
    return not table.empty and bool(
        (table.groupby(list(CURVE_KEY[:2]), dropna=False)["ranks"].nunique() > 1).any()
        or (table.groupby(list(CURVE_KEY[:2]), dropna=False)["nodes"].nunique() > 1).any()
    )
