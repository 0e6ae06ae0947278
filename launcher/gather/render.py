"""The table as text: the seed's RST grid table, Markdown, CSV, JSON.

RST keeps the seed's first two columns (`Implementation`, `Throughput (img/s)`), its labels and its
link targets / substitution definitions, so the table renders as the seed's does with our columns
beside it. Markdown and CSV carry the same rows (CSV as numbers, for spreadsheets); JSON carries every
field of every run. Figures print no finer than their error bound allows (stats.decimals_for).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from typing import Any

import pandas as pd

from . import stats
from ..catalog import load_rows
from .catalog import COL_IMPL, COL_THROUGHPUT, rst_footer
from .table import summary
from .telemetry import COLUMNS as HW_COLUMNS, cells as hw_cells

DISPLAY_COLUMNS = (
    COL_IMPL,
    COL_THROUGHPUT,
    "Spread",
    "Window",
    "Published (img/s)",
    "Ratio",
    "Verdict",
    "Hardware",
    "Per GPU (img/s)",
    "Status",
    "GPU",
    "Driver",
    "Commit",
    "Recipe",
)

CSV_COLUMNS = (
    "implementation",
    "impl",
    "label",
    "throughput",
    "aggregate",
    "count",
    "mean",
    "std",
    "min",
    "max",
    "olympic_mean",
    "cv",
    "unstable",
    "error_bound",
    "window",
    "window_requested",
    "window_moved",
    "reference",
    "reference_hardware",
    "ratio",
    "tolerance",
    "verdict",
    "verdict_note",
    "hardware",
    "gpus",
    "per_gpu",
    "reference_per_gpu",
    "status",
    "reason",
    "scale",
    "stack",
    "data",
    "method",
    "gpu_model",
    "driver",
    "commit",
    "pinned_commit",
    "recipe_hash",
    "finished_at",
    "run_dirs",
    *HW_COLUMNS,
)

FORMATS = ("rst", "md", "csv", "json", "console")

#: the terminal view after a run: the seed's two columns first, then only the columns that say something
CONSOLE_COLUMNS = (
    COL_IMPL,
    COL_THROUGHPUT,
    "Window",
    "Published (img/s)",
    "Ratio",
    "Verdict",
    "Hardware",
    "Per GPU (img/s)",
    "Status",
    "GPU",
    "Commit",
)


def _isnull(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v)) if not isinstance(v, (list, dict, tuple)) else False
    except (TypeError, ValueError):
        return False


def _plain(v: Any) -> Any:
    """JSON-safe Python value: NaN -> None, numpy scalars -> Python."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if _isnull(v):
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def fmt_num(value: Any, rel_error: Any = None) -> str:
    if _isnull(value):
        return ""
    d = stats.decimals_for(float(value), None if _isnull(rel_error) else float(rel_error))
    return f"{float(value):.{d}f}"


def fmt_ref(value: Any) -> str:
    if _isnull(value):
        return ""
    v = float(value)
    return str(int(v)) if v.is_integer() else f"{v:g}"


#: ANSI escape sequences (CSI, OSC, two-byte), other C0/C1 controls, bidi overrides and marks: a label or a
#: reason (the log's tail) carrying them would recolour a terminal, hide or reorder a table's text
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?"
    r"|[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def clean(text: str) -> str:
    """A table cell's text: escape sequences and control / bidi characters dropped, line breaks and tabs
    made spaces (a cell is one line). Every text format goes through it; JSON escapes them itself."""
    return _CONTROL.sub(lambda m: " " if m[0] in "\t\n\r\v\f" else "", text)


def fmt_window(value: Any) -> str:
    """A window as the parsers' messages write it: `101..501` (completed iterations, exclusive start)."""
    if _isnull(value) or not isinstance(value, (list, tuple)) or len(value) != 2:
        return ""
    return f"{value[0]}..{value[1]}"


def window_cell(row: dict) -> str:
    """Empty when every run was measured over the iterations asked for; else what was measured, and what was
    asked (the log's records fell off the requested edges: the figure is over the measured window)."""
    if row.get("window_moved") is not True:
        return ""
    return "; ".join(
        f"{fmt_window(m)} (asked {fmt_window(q)})"
        for m, q in row.get("windows") or []
        if m and q and list(m) != list(q)
    )


def _short(v: Any, n: int = 10) -> str:
    if _isnull(v):
        return ""
    return ", ".join(s.strip()[:n] for s in str(v).split(","))


def stack_label(stack: Any) -> str:
    """What the row's label says about its software: nothing for the seed's (the default), else which."""
    return "" if _isnull(stack) or str(stack) in ("", "seed") else f" (stack={stack})"


def display_rows(table: pd.DataFrame, label_col: str = "label") -> list[dict[str, str]]:
    """The table's cells as text, shared by RST and Markdown."""
    out = []
    for r in table.to_dict("records"):
        eb = r.get("error_bound")
        n = r.get("count") or 0
        spread = ""
        if n >= 2:
            spread = (
                f"n={n}, {'olympic, ' if not _isnull(r.get('olympic_mean')) else ''}"
                f"sd {fmt_num(r['std'], eb)}, {fmt_num(r['min'], eb)}–{fmt_num(r['max'], eb)}"
            )
        elif n == 1:
            spread = "n=1" + (f", ±{100 * eb:.2g}% (log)" if not _isnull(eb) else "")
        r = {k: (None if _isnull(v) else v) for k, v in r.items()}
        verdict = r.get("verdict") or ""
        if verdict == "n/a" and r.get("verdict_note"):
            note = r["verdict_note"]
            verdict = (
                "n/a: other hardware"
                if "measured on" in note
                else "n/a: smoke scale"
                if "smoke" in note
                else f"n/a: {note}"
            )
        per_gpu = ""
        if not _isnull(r.get("per_gpu")) and (
            r.get("hardware") != r.get("reference_hardware") or _isnull(r.get("reference"))
        ):
            per_gpu = fmt_num(r["per_gpu"], eb)
            if not _isnull(r.get("reference_per_gpu")):
                # the published figures are whole numbers: +-0.5 img/s is all they support
                per_gpu += f" vs {fmt_num(r['reference_per_gpu'], 0.5 / r['reference'])}"
        status = str(r.get("status") or "")
        if r.get("unstable") is True and not _isnull(r.get("cv")):
            status = f"ok, unstable (CV {100 * r['cv']:.1f}% > {100 * r['unstable_threshold']:.1f}%)"
        if r.get("reason"):
            status += f": {r['reason']}"
        if r.get("scale") == "smoke":
            status += " (smoke)"
        out.append(
            {
                k: clean(v)
                for k, v in {
                    COL_IMPL: str(r.get(label_col) or r.get("impl")) + stack_label(r.get("stack")),
                    COL_THROUGHPUT: fmt_num(r.get("throughput"), eb),
                    "Spread": spread,
                    "Window": window_cell(r),
                    "Published (img/s)": fmt_ref(r.get("reference")),
                    "Ratio": "" if _isnull(r.get("ratio")) else f"{r['ratio']:.3f}",
                    "Verdict": verdict,
                    "Hardware": "" if _isnull(r.get("hardware")) else str(r["hardware"]),
                    "Per GPU (img/s)": per_gpu,
                    "Status": status,
                    "GPU": "" if _isnull(r.get("gpu_model")) else str(r["gpu_model"]),
                    "Driver": "" if _isnull(r.get("driver")) else str(r["driver"]),
                    "Commit": _short(r.get("commit"))
                    + ("" if _isnull(r.get("pinned_commit")) else f" (pin {r['pinned_commit']})"),
                    "Recipe": _short(r.get("recipe_hash")),
                    **hw_cells(r),
                }.items()
            }
        )
    return out


def with_hw(columns: tuple[str, ...], cells: list[dict[str, str]]) -> tuple[str, ...]:
    """`columns`, plus each optional hardware column (telemetry) that some row has a value in."""
    return tuple(columns) + tuple(t for t, _ in HW_COLUMNS.values() if any(c.get(t) for c in cells))


_RST_SPECIAL = re.compile(r"([\\`*|_\[\]])")


def rst_escape(text: str) -> str:
    """Free text (reasons, host names) inside RST: no accidental references or emphasis."""
    return _RST_SPECIAL.sub(r"\\\1", text)


def grid_table(header: list[str], rows: list[list[str]]) -> str:
    """An RST grid table, `=` under the header as the seed's."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    head_sep = "+" + "+".join("=" * (w + 2) for w in widths) + "+"

    def line(cells: list[str]) -> str:
        return "|" + "|".join(f" {c.ljust(w)} " for c, w in zip(cells, widths)) + "|"

    out = [sep, line(header), head_sep]
    for r in rows:
        out += [line(r), sep]
    return "\n".join(out) + "\n"


def render_rst(table: pd.DataFrame) -> str:
    cells = display_rows(table)
    columns = with_hw(DISPLAY_COLUMNS, cells)
    rows = []
    for c in cells:
        rows.append([c[COL_IMPL]] + [rst_escape(c[k]) for k in columns[1:]])
    anonymous = sum(len(re.findall(r"`__(?:\W|$)", r[0])) for r in rows)
    return grid_table(list(columns), rows) + "\n" + rst_footer(anonymous)


def render_md(table: pd.DataFrame) -> str:
    cells = display_rows(table, label_col="title")

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    columns = with_hw(DISPLAY_COLUMNS, cells)
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---:" if k in (COL_THROUGHPUT, "Published (img/s)", "Ratio") else "---" for k in columns) + "|",
    ]
    lines += ["| " + " | ".join(esc(c[k]) for k in columns) + " |" for c in cells]
    return "\n".join(lines) + "\n"


def render_console(table: pd.DataFrame) -> str:
    """A compact grid table for the terminal: plain titles, no RST footer, empty columns left out."""
    cells = display_rows(table, label_col="title")
    cols = [k for i, k in enumerate(with_hw(CONSOLE_COLUMNS, cells)) if i < 2 or any(c[k] for c in cells)]
    return grid_table(cols, [[c[k] for k in cols] for c in cells])


def _csv_cell(v: Any) -> Any:
    return clean(v) if isinstance(v, str) else v


def render_csv(table: pd.DataFrame) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in table.to_dict("records"):
        r = dict(
            r,
            implementation=r.get("title"),
            run_dirs=";".join(str(x) for x in r.get("run_dirs") or []),
            window=fmt_window(r.get("window")),
            window_requested=fmt_window(r.get("window_requested")),
        )
        w.writerow(["" if _isnull(r.get(k)) else _csv_cell(_plain(r.get(k))) for k in CSV_COLUMNS])
    return buf.getvalue()


def render_json(runs: pd.DataFrame, table: pd.DataFrame | None = None) -> str:
    table = summary(runs) if table is None else table
    doc = {"runs": [_plain(r) for r in runs.to_dict("records")], "table": [_plain(r) for r in table.to_dict("records")]}
    return json.dumps(doc, indent=2, default=str) + "\n"


def render(runs: pd.DataFrame, fmt: str = "rst", table: pd.DataFrame | None = None) -> str:
    """`runs` is gather()'s per-run frame; the table is computed from it unless given."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "json":
        return render_json(runs, table)
    table = summary(runs) if table is None else table
    return {"rst": render_rst, "md": render_md, "csv": render_csv, "console": render_console}[fmt](table)


HISTORY_COLUMNS = (
    COL_IMPL,
    "Hardware",
    "Runs",
    "First",
    "Last",
    "Latest (img/s)",
    "Before (img/s)",
    "Change",
    "Trend",
    "Status",
)


def render_history(trend: pd.DataFrame, fmt: str = "rst") -> str:
    """The history trend per row: latest figure against the runs before it, regressions flagged."""
    if fmt == "json":
        return json.dumps([_plain(r) for r in trend.to_dict("records")], indent=2, default=str) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        cols = [
            "impl",
            "label",
            "hardware",
            "scale",
            "count",
            "first",
            "last",
            "latest",
            "recent_mean",
            "recent_std",
            "change",
            "noise",
            "regression",
            "status",
        ]
        trend.reindex(columns=cols).map(_csv_cell).to_csv(buf, index=False, lineterminator="\n")
        return buf.getvalue()

    rows = load_rows()
    cells = []
    for r in trend.to_dict("records"):
        info = rows.get(r["impl"])
        name = (info.label if fmt == "rst" else info.title) if info else str(r["impl"])
        before = ""
        if not _isnull(r.get("recent_mean")):
            before = fmt_num(r["recent_mean"])
            if not _isnull(r.get("recent_std")):
                before += f" ± {fmt_num(r['recent_std'])}"
        status = r["status"] + (f" (below by more than {fmt_num(r['noise'])})" if r["regression"] else "")
        scale = f" ({r['scale']})" if r.get("scale") not in (None, "full") and not _isnull(r.get("scale")) else ""
        cells.append(
            [
                clean(c)
                for c in (
                    name,
                    f"{r.get('hardware') or ''}{scale}",
                    str(r["count"]),
                    str(r["first"] or "")[:10],
                    str(r["last"] or "")[:10],
                    fmt_num(r["latest"]),
                    before,
                    "" if _isnull(r.get("change")) else f"{100 * r['change']:+.1f}%",
                    " → ".join(fmt_num(v) for v in r["values"][-6:]),
                    status,
                )
            ]
        )
    if fmt == "md":
        lines = ["| " + " | ".join(HISTORY_COLUMNS) + " |", "|" + "|".join("---" for _ in HISTORY_COLUMNS) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        return "\n".join(lines) + "\n"
    rst_rows = [[row[0]] + [rst_escape(c) for c in row[1:]] for row in cells]
    anonymous = sum(len(re.findall(r"`__(?:\W|$)", r[0])) for r in rst_rows)
    return grid_table(list(HISTORY_COLUMNS), rst_rows) + "\n" + rst_footer(anonymous)
