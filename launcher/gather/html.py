"""The report: one self-contained static HTML page (`python -m launcher.gather PATH --html report.html`).

No server and no network: the styles, the one small script and the charts are inline, and the page's
Content-Security-Policy forbids loading anything else, so a browser opening it fetches nothing. It holds

* the table (the same cells as the text formats, render.display_rows, with the seed's labels as links and
  framework badges), unstable and moved-window marks, and the optional hardware columns (telemetry);
* a bar chart of measured vs published img/s per row;
* the scaling view when the runs hold one (scaling.py);
* the history of each row from the SQLite store, every point that was a regression when it came marked;
* per row, one click away (<details>): hosts, GPUs, driver, CUDA, commit, recipe hash, stack, scale, the
  software found, the method line and error bound, the telemetry over the window, the run directories.

Charts are matplotlib figures rendered to inline SVG (text kept as text, so they scale and print sharply).
Templates (Jinja2, autoescaped) and the stylesheet are package data under launcher/gather/templates/.
Every number shown in the table also sits in a `data-value` attribute, as the JSON format writes it, so a
test can hold the page to `--format json`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ..catalog import order_of
from . import stats
from .catalog import ANONYMOUS_TARGET, COL_IMPL, COL_THROUGHPUT, SEED_SUBSTITUTIONS, SEED_TARGETS
from .render import DISPLAY_COLUMNS, _plain, display_rows, fmt_num, fmt_ref, fmt_window, with_hw
from .scaling import series as scaling_series
from .telemetry import COLUMNS as HW_COLUMNS

TEMPLATES = Path(__file__).parent / "templates"

#: the seed's substitutions as words (the logos are remote images: a self-contained page shows the name)
SUBSTITUTION_TEXT = {"D2": "Detectron2", "PT": "PyTorch", "TF": "TensorFlow", "mxnet": "MXNet", "C2": "Caffe2"}

#: table columns shown in the HTML table, beside the implementation (the rest is in each row's details)
HTML_COLUMNS = (
    COL_THROUGHPUT,
    "Published (img/s)",
    "Ratio",
    "Verdict",
    "Hardware",
    "Per GPU (img/s)",
    "Status",
    "Spread",
    "Window",
)

#: which table field a numeric cell shows (data-col / data-value)
NUMERIC = {
    COL_THROUGHPUT: "throughput",
    "Published (img/s)": "reference",
    "Ratio": "ratio",
    "Per GPU (img/s)": "per_gpu",
    **{title: key for key, (title, _) in HW_COLUMNS.items()},
}

COLORS = {"measured": "#1f77b4", "published": "#7f7f7f", "regression": "#d62728", "ideal": "#2ca02c"}


# ------------------------------------------------------------------ labels


def label_html(label: str) -> str:
    """The seed's RST label as HTML: named references become links, `|PT|` a framework badge (escaped)."""
    from markupsafe import Markup, escape

    targets = dict(SEED_TARGETS)
    subs = {name: opts for name, _, opts in SEED_SUBSTITUTIONS}
    out: list[str] = []
    pos = 0
    for m in re.finditer(r"`([^`]+)`__|\|([A-Za-z0-9]+)\||([A-Za-z0-9][\w.-]*)_(?=\s|$)", label):
        out.append(str(escape(label[pos : m.start()])))
        if m.group(1):
            out.append(f'<a href="{escape(ANONYMOUS_TARGET)}">{escape(m.group(1))}</a>')
        elif m.group(2):
            name = m.group(2)
            target = dict(subs.get(name, ())).get("target")
            text = escape(SUBSTITUTION_TEXT.get(name, name))
            badge = f'<span class="fw fw-{escape(name.lower())}">{text}</span>'
            out.append(f'<a class="fwlink" href="{escape(target)}">{badge}</a>' if target else badge)
        else:
            name = m.group(3)
            url = targets.get(name)
            out.append(f'<a href="{escape(url)}">{escape(name)}</a>' if url else str(escape(m.group(0))))
        pos = m.end()
    out.append(str(escape(label[pos:])))
    return Markup("".join(out))


# ------------------------------------------------------------------ charts


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": "launcher-report",
            "font.size": 9,
            "font.family": ["DejaVu Sans", "sans-serif"],
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    return plt


def svg(fig) -> str:
    """A matplotlib figure as inline SVG: no XML prolog, no fixed size (CSS makes it fit its box)."""
    plt = _plt()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", text, count=1)
    return text.replace("<svg", '<svg role="img" preserveAspectRatio="xMidYMid meet"', 1)


def _short_hw(r: dict) -> str:
    bits = [str(r.get("hardware") or "")]
    if r.get("scale") not in (None, "full"):
        bits.append(str(r["scale"]))
    if r.get("stack") not in (None, "", "seed"):
        bits.append(f"stack={r['stack']}")
    return ", ".join(b for b in bits if b)


def bar_chart(rows: list[dict]) -> str | None:
    """Measured vs published img/s per row: horizontal bars (long labels, narrow screens)."""
    shown = [r for r in rows if r.get("throughput") is not None or r.get("reference") is not None]
    if not shown:
        return None
    plt = _plt()
    n = len(shown)
    fig, ax = plt.subplots(figsize=(8, 0.55 * n + 1.1))
    y = list(range(n))
    h = 0.38
    meas = [r.get("throughput") or 0.0 for r in shown]
    errs = [r.get("std") or 0.0 for r in shown]
    refs = [r.get("reference") or 0.0 for r in shown]
    bars = ax.barh(
        [v - h / 2 for v in y],
        meas,
        height=h,
        xerr=errs if any(errs) else None,
        color=COLORS["measured"],
        label="measured",
        error_kw={"capsize": 3, "lw": 1},
    )
    for b, r in zip(bars, shown):
        if (
            r.get("reference_hardware")
            and r.get("hardware")
            and r["hardware"] != r["reference_hardware"]
            or r.get("scale") not in (None, "full")
        ):
            b.set_hatch("///")
            b.set_edgecolor("white")
    ax.barh([v + h / 2 for v in y], refs, height=h, color=COLORS["published"], label="published (8 V100s)")
    top = max([m + e for m, e in zip(meas, errs)] + refs) or 1.0
    for v, m, e, ref, r in zip(y, meas, errs, refs, shown):
        if r.get("throughput") is not None:  # the figure past its error bar
            ax.text(m + e + top * 0.01, v - h / 2, fmt_num(m, r.get("error_bound")), va="center", fontsize=8)
        if r.get("reference") is not None:
            ax.text(ref + top * 0.01, v + h / 2, fmt_ref(ref), va="center", fontsize=8, color="#555")
    labels = [f"{r.get('title') or r['impl']}" + (f"\n{_short_hw(r)}" if _short_hw(r) else "") for r in shown]
    ax.set_yticks(y)
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.15)
    ax.set_xlabel(
        "training throughput (img/s); hatched: not comparable with the published figure (other hardware or scale)"
    )
    ax.legend(loc="lower right", frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return svg(fig)


def history_points(group: pd.DataFrame) -> list[dict]:
    """Each stored run of one row, oldest first, with whether it was a regression when it came (stats.regression
    against the runs before it: the rule `--history` applies to the latest)."""
    vals = group["throughput"].astype(float).tolist()
    bound = group["error_bound"].max()
    bound = None if pd.isna(bound) else float(bound)
    out = []
    for i, (v, when, commit) in enumerate(zip(vals, group["finished_at"], group["commit"])):
        reg, noise = stats.regression(vals[:i], v, bound)
        out.append({"value": v, "when": when, "commit": commit, "regression": bool(reg), "noise": noise})
    return out


def history_chart(points: list[dict], reference: float | None, title: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 2.4))
    when = pd.to_datetime([p["when"] for p in points], errors="coerce", utc=True)
    # time on the axis when every run has one and there are two; else the runs in order
    x = list(range(1, len(points) + 1)) if when.isna().any() or len(points) < 2 else when
    vals = [p["value"] for p in points]
    ax.plot(x, vals, marker="o", ms=4, color=COLORS["measured"], label="img/s")
    reg = [(xi, p["value"]) for xi, p in zip(x, points) if p["regression"]]
    if reg:
        ax.scatter(
            [a for a, _ in reg],
            [b for _, b in reg],
            marker="X",
            s=70,
            color=COLORS["regression"],
            zorder=3,
            label="regression",
        )
    if reference:
        ax.axhline(reference, ls="--", lw=1, color=COLORS["published"], label=f"published {fmt_ref(reference)}")
    ax.set_ylabel("img/s")
    lo, hi = min(vals + ([reference] if reference else [])), max(vals + ([reference] if reference else []))
    pad = (hi - lo) * 0.15 or hi * 0.05 or 1.0
    ax.set_ylim(max(0.0, lo - pad), hi + pad)
    ax.set_title(title, fontsize=9, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", frameon=False, fontsize=8)
    if not isinstance(x, list):
        fig.autofmt_xdate()
    else:
        ax.set_xticks(x)
        ax.set_xlabel("run")
    return svg(fig)


def scaling_chart(s: dict) -> str:
    plt = _plt()
    pts = s["points"]
    fig, ax = plt.subplots(figsize=(6, 2.8))
    ranks = [p["ranks"] for p in pts]
    ax.plot(ranks, [p["throughput"] for p in pts], marker="o", color=COLORS["measured"], label="measured")
    base = pts[0]
    ax.plot(ranks, [base["per_rank"] * r for r in ranks], ls="--", color=COLORS["ideal"], label="linear")
    for p in pts:
        ax.annotate(
            f"{100 * p['efficiency']:.0f}%",
            (p["ranks"], p["throughput"]),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=8,
        )
    ax.set_xlabel("ranks")
    ax.set_ylabel("img/s")
    ax.set_xticks(ranks)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, loc="upper left")
    return svg(fig)


# ------------------------------------------------------------------ the page


def _clean(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _row_runs(row: dict, runs_by_dir: dict[str, dict]) -> list[dict]:
    return [runs_by_dir[d] for d in row.get("run_dirs") or [] if d in runs_by_dir]


def _provenance(row: dict, runs: list[dict]) -> list[tuple[str, Any]]:
    """The row's provenance as (label, text) pairs; every distinct value across its runs."""

    def each(fn) -> str:
        seen: list[str] = []
        for r in runs:
            try:
                v = fn(r)
            except (AttributeError, KeyError, TypeError):
                v = None
            if v not in (None, "", [], {}) and str(v) not in seen:
                seen.append(str(v))
        return "; ".join(seen)

    def prov(r: dict) -> dict:
        return r.get("provenance") if isinstance(r.get("provenance"), dict) else {}

    def gpus(r: dict) -> str | None:
        p = prov(r)
        if p.get("accelerator_model_name"):
            n = p.get("accelerators_per_node")
            return f"{n} x {p['accelerator_model_name']}" if n else p["accelerator_model_name"]
        if p.get("host_processor_model_name"):
            return f"none (CPU: {p['host_processor_model_name']})"
        return None

    def cuda(r: dict) -> str | None:
        p = prov(r)
        parts = [
            f"toolkit {p['cuda_version']}" if p.get("cuda_version") else None,
            f"driver supports {p['cuda_driver_api_version']}" if p.get("cuda_driver_api_version") else None,
            f"cuDNN {p['cudnn_version']}" if p.get("cudnn_version") else None,
        ]
        return ", ".join(x for x in parts if x) or None

    def software(r: dict) -> str | None:
        sw = prov(r).get("software")
        if not isinstance(sw, dict):
            return None
        found = sw.get("found") or {}
        wanted = sw.get("wanted") or {}
        if not found and sw.get("error"):
            return f"check failed: {sw['error']}"
        return ", ".join(f"{k} {found.get(k) or 'missing'} (wanted {wanted.get(k)})" for k in found or wanted) or None

    eb = row.get("error_bound")
    items = [
        ("Hosts", each(lambda r: r.get("host"))),
        ("GPUs", each(gpus)),
        ("Driver", each(lambda r: prov(r).get("cuda_driver_version"))),
        ("CUDA", each(cuda)),
        ("Framework", each(lambda r: prov(r).get("framework"))),
        ("Commit", each(lambda r: r.get("commit")) or _clean(row.get("commit"))),
        ("Recipe hash", each(lambda r: r.get("recipe_hash")) or _clean(row.get("recipe_hash"))),
        ("Stack", _clean(row.get("stack")) or each(lambda r: r.get("stack"))),
        ("Scale", _clean(row.get("scale"))),
        ("Data", _clean(row.get("data"))),
        ("Software found", each(software)),
        ("Aggregate", _clean(row.get("aggregate"))),
        ("Method", each(lambda r: r.get("method")) or _clean(row.get("method"))),
        ("Error bound", f"±{100 * eb:.3g}% (the log's rounding over the window)" if _clean(eb) else ""),
        ("Window", "; ".join(f"{fmt_window(m)} (asked {fmt_window(q)})" for m, q in row.get("windows") or [] if m)),
        ("Verdict", _clean(row.get("verdict_note")) or ""),
        ("Reason", each(lambda r: r.get("reason") if r.get("status") != "ok" else None)),
        ("Run directories", "; ".join(str(d) for d in row.get("run_dirs") or [])),
    ]
    return [(k, v) for k, v in items if v not in (None, "")]


def _telemetry(runs: list[dict]) -> list[dict]:
    out = []
    for r in runs:
        t = r.get("telemetry")
        if isinstance(t, dict) and t:
            out.append({"run_dir": r.get("run_dir"), **t})
    return out


def _status_marks(row: dict) -> list[tuple[str, str]]:
    marks = []
    if row.get("unstable") is True:
        cv, th = row.get("cv"), row.get("unstable_threshold")
        why = f"CV {100 * cv:.1f}% > {100 * th:.1f}%" if _clean(cv) is not None and _clean(th) is not None else ""
        marks.append(("unstable", f"unstable: its runs disagree beyond their noise ({why})"))
    if row.get("window_moved") is True:
        marks.append(("moved", "window moved: measured over other iterations than asked (see Window)"))
    return marks


def render_html(
    runs: pd.DataFrame,
    table: pd.DataFrame,
    *,
    history: pd.DataFrame | None = None,
    history_note: str | None = None,
    problems: Iterable[Any] = (),
    sources: Iterable[str] = (),
    generated_at: str | None = None,
) -> str:
    """The page as text."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(("html", "j2")),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v, d=0: "" if _clean(v) is None else f"{100 * float(v):.{d}f}%"
    env.filters["num"] = lambda v, d=1: "" if _clean(v) is None else f"{float(v):.{d}f}"
    records = [{k: _clean(v) for k, v in r.items()} for r in table.to_dict("records")] if not table.empty else []
    run_records = (
        [
            {k: _clean(v) if not isinstance(v, (dict, list)) else v for k, v in r.items()}
            for r in runs.to_dict("records")
        ]
        if not runs.empty
        else []
    )
    runs_by_dir = {r.get("run_dir"): r for r in run_records if r.get("run_dir")}
    cells = display_rows(table, label_col="title") if records else []
    # the figure columns always; Spread and Window only when some row says something there
    columns = tuple(
        c for c in with_hw(HTML_COLUMNS, cells) if c not in ("Spread", "Window") or any(cell.get(c) for cell in cells)
    )
    rows = []
    for i, (r, c) in enumerate(zip(records, cells)):
        rruns = _row_runs(r, runs_by_dir)
        rows.append(
            {
                "i": i,
                "impl": r.get("impl"),
                "label": label_html(str(r.get("label") or r.get("impl"))),
                "title": r.get("title") or r.get("impl"),
                "stack": r.get("stack"),
                "cells": [
                    {
                        "col": col,
                        "text": c.get(col, ""),
                        "key": NUMERIC.get(col),
                        "value": _plain(r.get(NUMERIC[col])) if col in NUMERIC else None,
                    }
                    for col in columns
                ],
                "verdict": r.get("verdict") or "",
                "status": str(r.get("status") or ""),
                "marks": _status_marks(r),
                "provenance": _provenance(r, rruns),
                "telemetry": _telemetry(rruns),
                "throughput": r.get("throughput"),
                "reference": r.get("reference"),
            }
        )
    hist = []
    if history is not None and not history.empty:
        titles = {r["impl"]: r.get("title") or r["impl"] for r in records}
        refs = {r["impl"]: (r.get("reference"), r.get("reference_hardware")) for r in records}
        keys = sorted(
            history.groupby(["impl", "hardware", "scale"], dropna=False, sort=False).groups,
            key=lambda k: (order_of(k[0]), str(k[0]), str(k[1]), str(k[2])),
        )
        for impl, hw, scale in keys:
            g = history[
                (history["impl"] == impl)
                & (history["hardware"].fillna("\0") == (hw if isinstance(hw, str) else "\0"))
                & (history["scale"].fillna("\0") == (scale if isinstance(scale, str) else "\0"))
            ]
            if g.empty:
                continue
            pts = history_points(g)
            ref, ref_hw = refs.get(impl, (None, None))
            ref = ref if ref and hw == ref_hw and scale in (None, "full") else None
            title = f"{titles.get(impl, impl)} on {hw}" + (f" ({scale} scale)" if scale not in (None, "full") else "")
            hist.append(
                {
                    "title": title,
                    "svg": history_chart(pts, ref, title),
                    "points": pts,
                    "regressions": sum(p["regression"] for p in pts),
                    "latest_regression": pts[-1]["regression"],
                }
            )
    scale_view = []
    for s in scaling_series(run_records):
        scale_view.append({**s, "title": s.get("label") or s["impl"], "svg": scaling_chart(s)})
    counts: dict[str, int] = {}
    for r in run_records:
        counts[str(r.get("status"))] = counts.get(str(r.get("status")), 0) + 1
    from .. import __version__ as version

    js = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    # the CSP lets exactly this script run: nothing a label or a reason might smuggle in would
    js_hash = "sha256-" + base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")
    return env.get_template("report.html.j2").render(
        css=(TEMPLATES / "report.css").read_text(encoding="utf-8"),
        js=js,
        js_hash=js_hash,
        generated_at=generated_at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        version=version,
        sources=list(sources),
        counts=counts,
        columns=columns,
        impl_col=COL_IMPL,
        rows=rows,
        bar_svg=bar_chart(records),
        history=hist,
        history_note=history_note,
        scaling=scale_view,
        problems=[str(p) for p in problems],
        hw_titles=[t for t, _ in HW_COLUMNS.values()],
        rules=_rules(),
        all_columns=DISPLAY_COLUMNS,
    )


def _rules() -> list[tuple[str, str]]:
    return [
        (
            "Figure",
            "iterations 100-500 (or the window asked) from the implementation's own log; repeats of a row, "
            "hardware, recipe and scale averaged (olympic mean from 5 runs on)",
        ),
        (
            "Verdict",
            "ratio = measured / published; reproduced within the row's tolerance (default 5%), else faster "
            "or slower; n/a on other hardware (compare img/s per GPU), at smoke scale or with no "
            "published figure",
        ),
        (
            "Unstable",
            f"coefficient of variation above max({100 * stats.UNSTABLE_CV:.0f}%, "
            f"{stats.UNSTABLE_BOUND_FACTOR:g} x the largest parser error bound)",
        ),
        (
            "Regression",
            f"a figure below the mean of up to {stats.RECENT} runs before it by more than max(2 sd, "
            f"2 x error bound, {100 * stats.UNSTABLE_CV:.0f}%)",
        ),
        (
            "Telemetry",
            "sampled by the node while the command ran, reduced over the window's wall-clock span; "
            "GPU power is board power (nvidia-smi power.draw); J/img = mean total power x window "
            "seconds / images",
        ),
    ]


def write_html(path: str | os.PathLike, text: str) -> Path:
    """Write the page atomically (a reader sees the old page or the whole new one)."""
    from ..rundir import atomic_write_text

    path = Path(path)
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


def write_report(args: Any, runs: pd.DataFrame | None, table: pd.DataFrame | None, problems: list) -> list[str]:
    """`--html FILE`: the page for what was gathered, with the history store's trend (the --since / --impl /
    --hardware filters apply); returns what could not be written, as messages (the table is printed already)."""
    import sys

    from . import gather, history as hist
    from .table import summary

    if runs is None:
        runs = gather([], db=None)[0]
    if table is None:
        table = summary(runs)
    history, note = None, None
    if os.path.exists(args.db):
        try:
            history = hist.load(args.db, since=args.since, impl=args.impl, hardware=args.hardware)
        except hist.HistoryError as e:
            note = f"history not shown: {e}"
    else:
        note = f"no history store at {args.db} yet (gather without --no-record fills it)"
    try:
        text = render_html(
            runs,
            table,
            history=history,
            history_note=note,
            problems=problems,
            sources=[os.path.abspath(p) for p in args.paths],
        )
        path = write_html(args.html, text)
    except OSError as e:
        return [
            f"cannot write the report {args.html} (--html): {e.strerror or e}; the table above is complete: "
            "point --html at a file you can write"
        ]
    print(f"wrote {path}", file=sys.stderr)
    return []
