"""The recipe hash: a content hash of everything that defines a row's code and command.

Two results are comparable only when their recipe hashes are equal.  The hash covers the code (the
full commit hash, which is content-addressed, so a local mirror or a fork at the same commit is the
same code; the *contents* of patch files and environment recipes; for repo-less rows the files
under jobs/<row>/), the patches as data, env vars, work dir, setup and build steps, the command and
the environment spec.  It does not cover where or when a row runs (run dir, backend, hardware name,
timestamps), and the data location and this checkout's jobs/ path are replaced by placeholders, so
moving COCO or the launcher does not change a recipe.  Patch names and descriptions are prose and
are left out too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .. import JOBS_DIR
from ..node.compiled import cuda_archs
from ..spec import JobSpec

VERSION = 1  # bump when what the hash covers changes
_SKIP = {"__pycache__", ".pytest_cache"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str | None:
    return _sha(path.read_bytes()) if path.is_file() else None


def _tree_digest(root: Path) -> dict[str, str]:
    """Path -> content hash of every file under ROOT (the code of a repo-less row)."""
    if not root.is_dir():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not (set(p.relative_to(root).parts) & _SKIP) and p.suffix != ".pyc":
            out[p.relative_to(root).as_posix()] = _sha(p.read_bytes())
    return out


def row_dir(spec: JobSpec, jobs_dir: str | Path | None = None) -> Path:
    """jobs/<row>/: the row's patch files, environment recipes and (for repo-less rows) its code."""
    return Path(jobs_dir or JOBS_DIR) / spec.impl


def _neutral(text: str, spec: JobSpec, jobs_dir: Path) -> str:
    """Replace site-specific locations with placeholders (data root, this checkout's jobs/ dir)."""
    for path, token in (
        (str(jobs_dir.resolve()), "${lx.jobs}"),
        (str(jobs_dir), "${lx.jobs}"),
        (spec.data_root.rstrip("/") if spec.data_root else "", "${data.coco_root}"),
        (spec.run_dir.rstrip("/") if spec.run_dir else "", "${lx.run_dir}"),
        (spec.weights_dir.rstrip("/") if spec.weights_dir else "", "${weights_dir}"),
        (str((spec.dataset or {}).get("stage_dir") or "").rstrip("/"), "${data.stage_dir}"),
        (_local_env_path(spec), "${impl.environment.path}"),
    ):
        if path and len(path) > 1:
            text = text.replace(path, token)
    return text


def _local_env_path(spec: JobSpec) -> str:
    """The row's environment when it is a directory or file here (its content is its recipe's, hashed apart);
    a registry image or a conda env name is the environment's identity and stays in the hash."""
    path = str((spec.environment or {}).get("path") or "")
    return path.rstrip("/") if path.startswith("/") else ""


def recipe_document(spec: JobSpec, jobs_dir: str | Path | None = None) -> dict[str, Any]:
    """The canonical description the hash is taken of (also handy to diff two recipes by eye)."""
    jobs = Path(jobs_dir or JOBS_DIR)
    rdir = row_dir(spec, jobs)
    n = lambda s: _neutral(str(s), spec, jobs)  # noqa: E731

    def patch_entries(patch_list: list) -> list:
        out = []
        for p in patch_list:
            entry = {k: p.get(k) for k in ("kind", "glob", "old", "new")}
            if (p.get("kind") or "diff") == "diff" and p.get("file"):
                f = Path(p["file"])
                entry["file_sha256"] = _file_digest(f if f.is_absolute() else rdir / f)
            out.append(entry)
        return out

    env = dict(spec.environment or {})
    if not env.get("managed"):  # keys a managed venv adds: left out otherwise, so older recipes keep their hashes
        for key in ("managed", "host_packages", "requirements"):
            env.pop(key, None)
    if not env.get("cuda_extensions"):  # added with compiled builds: absent, older recipes keep their hashes
        env.pop("cuda_extensions", None)
    if not env.get("host_only_extensions"):  # added later: absent, older recipes keep their hashes
        env.pop("host_only_extensions", None)
    env.pop("check", None)  # whether the node compares the software is the launcher's behaviour, not the recipe's
    if not env.get("create"):
        env.pop("create", None)
    if env.get("recipe"):
        env["recipe_sha256"] = _file_digest(rdir / env["recipe"])
    if env.get("constraints"):
        env["constraints_sha256"] = _file_digest(rdir / env["constraints"])
    else:
        env.pop("constraints", None)
    if spec.repo:
        code: Any = {"commit": spec.commit_full} if spec.commit_full else {"unresolved": f"{spec.repo}@{spec.commit}"}
    else:
        code = {"jobs_files": _tree_digest(rdir)}
    doc = {
        "version": VERSION,
        "impl": spec.impl,
        "code": code,
        "patches": patch_entries(spec.patches),
        "env": {k: n(v) for k, v in sorted((spec.env or {}).items())},
        "workdir": spec.workdir,
        "setup": [n(s) for s in spec.setup],
        "build": [n(s) for s in spec.build],
        "command": n(spec.command),
        "environment": {
            k: (n(v) if isinstance(v, str) else [n(x) for x in v] if k == "create" else v)
            for k, v in sorted(env.items())
        },
    }
    # added only when used, so the recipes of rows without them keep their hashes
    if spec.compat_patches:
        doc["compat_patches"] = patch_entries(spec.compat_patches)
    if spec.stack and spec.stack != "seed":
        doc["stack"] = spec.stack
    if env.get("cuda_extensions") and env.get("managed"):  # what its extensions are compiled for is its build
        doc["cuda_archs"] = cuda_archs(spec)
    ds = spec.dataset or {}
    if ds.get("layout"):
        doc["dataset"] = {k: ds.get(k) for k in ("layout", "link", "reads", "derive")}
    if spec.weights:
        doc["weights"] = [
            {k: w.get(k) for k in ("dest", "sha256", "md5", "md5_url", "sha256_prefix")} for w in spec.weights
        ]
    return doc


def recipe_hash(spec: JobSpec, jobs_dir: str | Path | None = None) -> str:
    """sha256 (hex) of the recipe document.  For a repo row, call after prepare (which resolves the
    full commit); before that the hash is of the configured `repo@commit` and will differ."""
    doc = recipe_document(spec, jobs_dir)
    return _sha(json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
