"""The data step: each row's exact COCO layout, built from the user's COCO folders with symlinks.

The seven seed rows read COCO in four shapes (docs/cluster.md, /work/notes/recipes.md A.3):

    layout     root (under data.stage_dir)   rows                          what it holds
    coco2017   coco2017/coco                 detectron2, mmdetection,      train2017/ val2017/ annotations/
                                             tensorpack                    -> data.coco_root
    coco2014   coco2014                      maskrcnn-benchmark, Detectron, annotations/instances_{train2014,
                                             matterport                    valminusminival2014,minival2014}.json
                                                                           -> data.coco2014_root; train2014/ val2014/
                                                                           (theirs, or links onto the 2017 images by
                                                                           id: launcher/data/linkfarm.py);
                                                                           coco_train2014, coco_val2014 (Detectron)
    simpledet  simpledet/data                SimpleDet                     coco/images/{train,val}2017,
                                                                           coco/annotations -> data.coco_root;
                                                                           cache/coco_train2017.roidb (made by
                                                                           SimpleDet's own script: `derive`)

A row names its layout, where its work tree links it (`impl.dataset.link`, made by the job script on
the node), what it reads (`reads`: checked before submission) and what it reads only after the window
(`later`: warned about). `stage(spec)` builds the layout (idempotent: a marker records the sources, a
link farm is rebuilt only when its annotation files change) and runs the `derive` steps in the row's
own environment in its prepared work tree; `problems(spec)` is the check before submission.
Nothing is copied and nothing the user owns is written: only `data.stage_dir` and the work tree's link.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any, Callable

from ..locks import locked
from ..node.build import marker_path
from ..node.environment import command_environ, wrap_command
from ..node.script import data_setup_lines
from ..node.venv import ensure_venv, is_managed
from ..rundir import atomic_write_json, now_iso
from . import linkfarm

#: layout -> its root, relative to data.stage_dir
ROOTS = {"coco2017": "coco2017/coco", "coco2014": "coco2014", "simpledet": "simpledet/data"}
ANN_2014 = ("instances_train2014.json", "instances_valminusminival2014.json", "instances_minival2014.json")
FARMS = {
    "train2014": ("instances_train2014.json",),
    "val2014": ("instances_valminusminival2014.json", "instances_minival2014.json"),
}
Log = Callable[[str], None]


class StageError(RuntimeError):
    """A layout that cannot be built; the message names the config key or file and the way out."""


def layout_root(layout: str, stage_dir: str | Path) -> Path:
    if layout not in ROOTS:
        raise StageError(f"impl.dataset.layout={layout!r} is not one of {', '.join(ROOTS)}")
    return Path(stage_dir) / ROOTS[layout]


def dataset_for(impl_dataset: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The spec's `dataset`: the row's impl.dataset plus its layout root and the sources (plan time, no IO)."""
    d = {k: v for k, v in (impl_dataset or {}).items()}
    if not d.get("layout"):
        return {}
    d["stage_dir"] = str(data["stage_dir"])
    d["root"] = str(layout_root(d["layout"], data["stage_dir"]))
    d["coco_root"] = str(data["coco_root"])
    d["coco2014_root"] = None if data.get("coco2014_root") in (None, "") else str(data["coco2014_root"])
    return d


def _marker(ds: dict) -> Path:
    return Path(ds["stage_dir"]) / f"{ds['layout']}.stage.json"


def _source_roots(ds: dict) -> dict[str, str | None]:
    """The user's folders this layout is made from (the marker records them)."""
    out = {"coco_root": ds["coco_root"]}
    if ds["layout"] == "coco2014":
        out["coco2014_root"] = ds.get("coco2014_root")
    return out


def _sources(ds: dict) -> dict[str, Path]:
    """Layout-relative path -> the user's file or directory it comes from."""
    c17 = Path(ds["coco_root"])
    if ds["layout"] == "coco2017":
        return {s: c17 / s for s in ("train2017", "val2017", "annotations")}
    if ds["layout"] == "simpledet":
        return {
            "coco/images/train2017": c17 / "train2017",
            "coco/images/val2017": c17 / "val2017",
            "coco/annotations": c17 / "annotations",
        }
    c14 = Path(ds["coco2014_root"]) if ds.get("coco2014_root") else None
    out: dict[str, Path] = {}
    for name in ANN_2014:
        out[f"annotations/{name}"] = (
            (c14 / "annotations" / name) if c14 else Path("<data.coco2014_root>/annotations") / name
        )
    for farm in FARMS:
        out[farm] = c14 / farm if c14 and (c14 / farm).is_dir() else c17 / ("train2017 + val2017 (linked by image id)")
    return out


def _said(sources: dict) -> str:
    return ", ".join(f"data.{k}={v}" for k, v in sources.items())


def _source_of(ds: dict, rel: str) -> str:
    best = ""
    for key in _sources(ds):
        if (rel == key or rel.startswith(key + "/")) and len(key) > len(best):
            best = key
    return str(_sources(ds)[best] / rel[len(best) :].lstrip("/")) if best else "(made by the data step)"


def _link(link: Path, target: Path) -> None:
    """LINK -> TARGET, replacing a link of ours that points elsewhere (never a real file or directory)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        if os.readlink(link) == str(target):
            return
        link.unlink()
    elif link.exists():
        raise StageError(
            f"{link} exists and is not a link of the data step; move it away (data.stage_dir is the "
            f"launcher's: every entry in it is a link or a link farm)"
        )
    os.symlink(target, link)


def _marker_data(marker: Path) -> dict:
    """A layout's marker; StageError (naming it and the way out) when it is truncated or not ours."""
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StageError(
            f"{marker} cannot be read ({e}): restage it with `python -m launcher.data stage ... --force`"
        ) from None
    if not isinstance(data, dict):
        raise StageError(f"{marker} is not a stage marker: restage with `python -m launcher.data stage ... --force`")
    return data


def _stamp_data(stamp: Path) -> dict | None:
    """A derived file's stamp; None (stale: made again) when it cannot be read."""
    try:
        return json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _stats(paths: list[Path]) -> dict[str, list[int]]:
    return {str(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in paths if p.exists()}


def _check_sources(ds: dict) -> None:
    wrong = []
    c17 = Path(ds["coco_root"])
    if not c17.is_dir():
        wrong.append(
            f"data.coco_root={c17} is not a directory: point it at COCO 2017 (train2017/, val2017/, annotations/)"
        )
    if ds["layout"] == "coco2014" and not ds.get("coco2014_root"):
        wrong.append(
            "this row's code reads COCO 2014 names (coco_2014_train + valminusminival): set "
            "data.coco2014_root to a folder with annotations/"
            + ", ".join(ANN_2014)
            + " (instances_train2014.json: COCO's annotations_trainval2014.zip; the minival files: "
            "Detectron's coco_annotations_minival.tgz; see docs/cluster.md, 'Data')"
        )
    if wrong:
        raise StageError("; and ".join(wrong))


def _build_2014_images(ds: dict, root: Path, old: dict, log: Log, force: bool) -> dict:
    """train2014/ and val2014/: the user's 2014 folders, or link farms onto the 2017 images."""
    c14, c17 = Path(ds["coco2014_root"]), Path(ds["coco_root"])
    farms = {}
    for farm, names in FARMS.items():
        if (c14 / farm).is_dir():
            _link(root / farm, c14 / farm)
            continue
        anns = [c14 / "annotations" / n for n in names if (c14 / "annotations" / n).is_file()]
        stats = {"annotations": _stats(anns), "coco_root": str(c17)}
        farms[farm] = stats
        if not force and old.get("farms", {}).get(farm) == stats and (root / farm).is_dir():
            continue
        if (root / farm).is_symlink():
            (root / farm).unlink()
        n = linkfarm.build(root / farm, anns, c17)
        log(f"[data] {root / farm}: {n} links onto {c17}/train2017 and val2017 (2014 names, same image ids)")
    for alias, farm in (("coco_train2014", "train2014"), ("coco_val2014", "val2014")):
        _link(root / alias, Path(farm))  # Detectron's directory names (dataset_catalog.py:65-88)
    return farms


def build_layout(ds: dict, log: Log = print, force: bool = False) -> Path:
    """Make the layout's links under data.stage_dir (idempotent). Raises StageError naming the way out."""
    _check_sources(ds)
    root = Path(ds["root"])
    marker = _marker(ds)
    with locked(Path(ds["stage_dir"]) / f".{ds['layout']}.lock"):
        old = _marker_data(marker) if marker.is_file() else {}
        sources = _source_roots(ds)
        if old and {k: old.get(k) for k in sources} != sources and not force:
            raise StageError(
                f"{root} was staged from {_said({k: old.get(k) for k in sources})}; the config says "
                f"{_said(sources)}. Rows running from it would see the change: re-point it with "
                f"`python -m launcher.data stage ... --force`, or use another data.stage_dir"
            )
        root.mkdir(parents=True, exist_ok=True)
        farms = {}
        for rel, src in _sources(ds).items():
            if ds["layout"] == "coco2014" and rel in FARMS:
                continue
            if src.exists():
                _link(root / rel, src)
            elif (root / rel).is_symlink():
                (root / rel).unlink()
        if ds["layout"] == "coco2014":
            farms = _build_2014_images(ds, root, old, log, force)
        if ds["layout"] == "simpledet":
            (root / "cache").mkdir(exist_ok=True)
        atomic_write_json(
            marker,
            {
                **sources,
                "layout": ds["layout"],
                "root": str(root),
                "farms": farms,
                "staged_at": old.get("staged_at") if old.get("farms") == farms and not force else now_iso(),
            },
        )
    return root


def _stamp(ds: dict, step: dict) -> Path:
    return Path(ds["root"]) / f"{step['creates']}.stamp.json"


def _step_state(ds: dict, step: dict) -> dict:
    root = Path(ds["root"])
    return {
        "from": _stats([root / f for f in step.get("from") or []]),
        "run": step["run"],
        "coco_root": ds["coco_root"],
    }


def _ensure_managed_venv(spec, log: Log) -> None:
    """A launcher-managed venv (stack=today) is otherwise made by the node's build: make it now, under the build's
    lock, so the row's own data script can run in it (the node then reuses it)."""
    if not is_managed(spec):
        return
    marker = marker_path(spec)
    with locked(marker.with_name(marker.name + ".lock")):
        if ensure_venv(spec, log) and marker.is_file():
            marker.unlink()  # a new venv holds nothing of the old build: the node builds again


def derive(spec, log: Log = print, force: bool = False) -> list[str]:
    """Run the row's `derive` steps whose outputs are missing or stale, in its work tree and environment."""
    ds, done = spec.dataset or {}, []
    for step in ds.get("derive") or []:
        out, stamp = Path(ds["root"]) / step["creates"], _stamp(ds, step)
        state = _step_state(ds, step)
        if not force and out.is_file() and stamp.is_file() and _stamp_data(stamp) == state:
            continue
        if not spec.checkout_dir:
            raise StageError(
                f"{step['creates']} is made by {spec.impl}'s own script in its work tree: prepare the "
                f"row first (python -m launcher impl={spec.impl} prepare_only=true)"
            )
        _ensure_managed_venv(spec, log)
        script = " && ".join(
            data_setup_lines(spec) + [f"cd {shlex.quote(str(spec.exec_dir))}", wrap_command(spec, step["run"])]
        )
        log(f"[data] making {out}: {step['run']} (in {spec.exec_dir}, {spec.impl}'s environment)")
        p = subprocess.run(["bash", "-c", script], env=command_environ(spec), capture_output=True, text=True)
        if p.returncode != 0 or not out.is_file():
            tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
            raise StageError(
                f"`{step['run']}` (making {out}) failed with exit {p.returncode} in {spec.exec_dir}:\n"
                f"{tail}\nIt runs in the row's environment (impl.environment); where that is only on "
                f"the compute nodes, run the data step there: srun python -m launcher.data stage "
                f"impl={spec.impl}"
            )
        atomic_write_json(stamp, state)
        done.append(str(out))
    return done


def stage(spec, log: Log = print, force: bool = False) -> Path | None:
    """Build SPEC's layout and its derived files. None for a row that reads no staged data."""
    ds = spec.dataset or {}
    if not ds.get("layout"):
        return None
    root = build_layout(ds, log, force)
    derive(spec, log, force)
    return root


def problems(spec) -> tuple[list[str], list[str]]:
    """(problems, warnings) of SPEC's data before submission: staged from the configured sources, every file
    it reads there, derived files fresh; what it reads only after the window is a warning."""
    ds = spec.dataset or {}
    if not ds.get("layout"):
        return [], []
    how = f"run `python -m launcher.data stage impl={spec.impl}` (prepare does it when the data is here)"
    try:
        _check_sources(ds)
    except StageError as e:
        return [f"data: {e}"], []
    marker = _marker(ds)
    if not marker.is_file():
        return [f"data: the {ds['layout']} layout is not staged in {ds['stage_dir']}: {how}"], []
    try:
        old, sources = _marker_data(marker), _source_roots(ds)
    except StageError as e:
        return [f"data: {e}"], []
    if {k: old.get(k) for k in sources} != sources:
        return [
            f"data: {ds['root']} was staged from {_said({k: old.get(k) for k in sources})}, not from the "
            f"configured {_said(sources)}: {how} --force"
        ], []
    root = Path(ds["root"])
    out = [
        f"data: {root / r} is missing (from {_source_of(ds, r)})"
        for r in ds.get("reads") or []
        if not (root / r).exists()
    ]
    from .jsoncheck import incomplete  # an annotation file cut short is not "complete"

    for r in ds.get("reads") or []:
        if r.endswith(".json") and (root / r).is_file() and (why := incomplete(root / r, ds["stage_dir"])):
            out.append(
                f"data: {root / r} (from {_source_of(ds, r)}) is not complete JSON: {why}; copy it again "
                "from its source"
            )
    for step in ds.get("derive") or []:
        stamp = _stamp(ds, step)
        if not (root / step["creates"]).is_file() or not stamp.is_file() or _stamp_data(stamp) != _step_state(ds, step):
            out.append(
                f"data: {root / step['creates']} is missing or older than its sources (made by `{step['run']}`): {how}"
            )
    warn = [
        f"data: {root / r} is missing (from {_source_of(ds, r)}); {spec.impl} reads it only after the "
        f"benchmark window (final evaluation)"
        for r in ds.get("later") or []
        if not (root / r).exists()
    ]
    return out, warn


def describe(spec) -> list[str]:
    """Dry-run lines: the layout, its sources, the work-tree link, what is read and made."""
    ds = spec.dataset or {}
    if not ds.get("layout"):
        return [f"data:            {spec.data_root or 'none'} (no staged layout)"]
    lines = [
        f"data:            {ds['layout']} layout at {ds['root']} (symlinks; "
        f"python -m launcher.data stage impl={spec.impl})",
        f"  from           data.coco_root={ds['coco_root']}"
        + (f", data.coco2014_root={ds.get('coco2014_root') or 'null (not set)'}" if ds["layout"] == "coco2014" else ""),
    ]
    if ds.get("link"):
        lines.append(f"  work tree      {ds['link']} -> {ds['root']}")
    root = Path(ds["root"])
    lines.append(
        "  reads          "
        + ", ".join(f"{r} [{'ok' if (root / r).exists() else 'missing'}]" for r in ds.get("reads") or [])
    )
    if ds.get("later"):
        lines.append("  after window   " + ", ".join(ds["later"]))
    for step in ds.get("derive") or []:
        lines.append(f"  made by        `{step['run']}` -> {step['creates']} (in the row's environment)")
    return lines
