"""The picture: measured vs published throughput per row, and (with history) a line per row over time.

Bars are the table's figures (mean or olympic mean), error bars the sample standard deviation of
repeats (none for a single run: one run has no spread to draw), the published figure a black
diamond. Rows measured on other hardware than the published figure's are hatched, so nobody reads a
bar against a diamond it cannot be compared with. Agg backend: no display needed.
"""

from __future__ import annotations

import os

import pandas as pd


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot(table: pd.DataFrame, path: str | os.PathLike, history: pd.DataFrame | None = None) -> str:
    """Write a PNG to `path` and return the path."""
    plt = _plt()
    with_hist = history is not None and not history.empty
    fig, axes = plt.subplots(2 if with_hist else 1, 1, figsize=(11, 9 if with_hist else 5), squeeze=False)
    ax = axes[0][0]
    # one bar per measured group; published-only rows get the marker alone
    ok = table["status"].astype(str) == "ok"  # an unstable group is ok too (its `unstable` flag says so)
    measured_impls = set(table.loc[ok, "impl"])
    # a published row with no ok run still shows its diamond (once), so the seven rows are always there
    unmeasured = (~ok) & table["reference"].notna() & ~table["impl"].isin(measured_impls)
    rows = pd.concat([table[ok], table[unmeasured].drop_duplicates("impl").assign(hardware=None)]).sort_values(
        ["order", "impl"], kind="stable"
    )
    labels, measured, errs, refs, hatches = [], [], [], [], []
    for r in rows.to_dict("records"):
        hw = r.get("hardware")
        labels.append(f"{r.get('title') or r['impl']}" + (f"\n{hw}" if isinstance(hw, str) else ""))
        t = r.get("throughput")
        measured.append(float(t) if t is not None and not pd.isna(t) else 0.0)
        s = r.get("std")
        errs.append(float(s) if s is not None and not pd.isna(s) else 0.0)
        ref = r.get("reference")
        refs.append(float(ref) if ref is not None and not pd.isna(ref) else None)
        ref_hw = r.get("reference_hardware")
        hatches.append("//" if isinstance(hw, str) and isinstance(ref_hw, str) and hw != ref_hw else "")
    x = list(range(len(labels)))
    bars = ax.bar(x, measured, yerr=errs, capsize=4, color="tab:blue", alpha=0.8, label="measured (img/s)")
    for b, h in zip(bars, hatches):
        b.set_hatch(h)
    rx = [i for i, v in zip(x, refs) if v is not None]
    ry = [v for v in refs if v is not None]
    if rx:
        ax.scatter(rx, ry, marker="D", color="black", zorder=3, label="published (V100 x8 unless noted)")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("throughput (img/s)")
    ax.set_title("Mask R-CNN R-50-FPN training throughput: measured vs published (hatched: not the published hardware)")
    ax.legend(loc="upper right", fontsize=8)
    if with_hist:
        ax2 = axes[1][0]
        h = history.copy()
        h["when"] = pd.to_datetime(h["finished_at"], errors="coerce", utc=True)
        for (impl, hw), g in h.groupby(["impl", "hardware"], dropna=False, sort=False):
            ax2.plot(g["when"], g["throughput"], marker="o", label=f"{impl} ({hw})")
        ax2.set_ylabel("throughput (img/s)")
        ax2.set_title("history")
        ax2.legend(fontsize=7, loc="best")
        fig.autofmt_xdate()
    fig.tight_layout()
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return path
