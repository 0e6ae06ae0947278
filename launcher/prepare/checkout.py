"""prepare(): the pinned checkout of a row, patched, in a cache shared by every run of the same recipe.

Layout of the cache (put it on the shared filesystem on a cluster, since compute nodes often have
no internet and run the tree prepared on the submit host):

    <cache_dir>/repos/<name>-<12 hex>.git      one bare mirror per repository (`git clone --mirror`)
    <cache_dir>/trees/<row>-<16 hex of recipe>  one work tree per recipe, patched, ready to build
    <cache_dir>/locks/                          flock files: rows of a sweep sharing a repo take turns

A tree is built under a temporary name and renamed into place only once checkout and every patch
have succeeded, with a completion marker (`.git/launcher-prepared.json`) written before the rename;
a directory without the marker is an interrupted prepare and is rebuilt.  The patched state is
staged in the tree's index (HEAD stays at the upstream commit), so `git diff` finds any later edit of
a tracked file; such a dirty tree is moved aside (never deleted: someone's edits may be in it) and
a clean one is prepared.  A warm prepare is a few `git rev-parse` calls: milliseconds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Callable

from ..rundir import atomic_write_json, now_iso
from ..spec import JobSpec
from .errors import GitError, StackBlocked
from ..locks import locked
from .git import rev_parse, discard, ensure_mirror, git, normalize_repo, repo_key, resolve_commit
from .patches import apply_patches
from .recipe import recipe_hash, row_dir

MARKER = "launcher-prepared.json"
_log = logging.getLogger("launcher.prepare")


def _say(log: Callable[[str], None] | None) -> Callable[[str], None]:
    return log if log is not None else _log.info


def tree_path(cache_dir: str | Path, spec: JobSpec) -> Path:
    """Where SPEC's work tree lives (needs spec.recipe_hash)."""
    return Path(cache_dir) / "trees" / f"{spec.impl}-{spec.recipe_hash[:16]}"


def tree_state(tree: Path, spec: JobSpec) -> str:
    """'ok' when TREE is a complete, clean checkout of SPEC's recipe; otherwise why it is not
    ('missing', 'incomplete: ...', 'corrupt: ...', 'dirty: ...')."""
    if not tree.exists():
        return "missing"
    marker = tree / ".git" / MARKER
    if not marker.is_file():
        return "incomplete: no completion marker (an interrupted prepare)"
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"corrupt: unreadable marker {marker} ({exc})"
    if data.get("recipe_hash") != spec.recipe_hash:
        return f"corrupt: marker is for recipe {data.get('recipe_hash')}, not {spec.recipe_hash}"
    head = git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], cwd=tree, check=False)
    if head.returncode != 0 or head.stdout.strip() != spec.commit_full:
        return f"corrupt: HEAD is {head.stdout.strip() or 'unreadable'} ({head.stderr.strip()}), expected {spec.commit_full}"
    diff = git(["diff", "--quiet", "--no-ext-diff"], cwd=tree, check=False)
    if diff.returncode == 1:
        names = git(["diff", "--name-only"], cwd=tree, check=False).stdout.split()
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return f"dirty: tracked files changed since prepare ({shown})"
    if diff.returncode != 0:
        return f"corrupt: git diff failed ({diff.stderr.strip()})"
    return "ok"


def _build_tree(
    spec: JobSpec, mirror: Path, tree: Path, jobs_dir: str | Path | None, log: Callable[[str], None]
) -> None:
    """Check out and patch SPEC's recipe into a temporary directory, then rename it to TREE."""
    tmp = tree.with_name(f".tmp-{tree.name}-{os.getpid()}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    # leftovers of a killed prepare of this recipe: stale, since builders of one repo hold its lock
    for stale in tmp.parent.glob(f".tmp-{tree.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        git(["clone", "--quiet", "--shared", "--no-checkout", str(mirror), str(tmp)])
        git(["checkout", "--quiet", "--detach", spec.commit_full], cwd=tmp)
        # the seed's own patches, then what the stack needs (impl.stacks.<name>.compat_patches)
        applied = apply_patches(tmp, list(spec.patches) + list(spec.compat_patches), row_dir(spec, jobs_dir), log)
        git(["add", "-A"], cwd=tmp)  # the patched state, staged: `git diff` then shows later edits
        atomic_write_json(
            tmp / ".git" / MARKER,
            {
                "recipe_hash": spec.recipe_hash,
                "impl": spec.impl,
                "repo": spec.repo,
                "commit": spec.commit,
                "commit_full": spec.commit_full,
                "stack": spec.stack,
                "patches": [{"name": a.name, "kind": a.kind, "files": a.files} for a in applied],
                "prepared_at": now_iso(),
                "host": socket.gethostname(),
            },
        )
        os.replace(tmp, tree)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _ensure_tree(spec: JobSpec, mirror: Path, cache: Path, jobs_dir, log) -> Path:
    tree = tree_path(cache, spec)
    state = tree_state(tree, spec)
    if state == "ok":
        log(
            f"reusing prepared work tree {tree} ({spec.repo} at {spec.commit_full[:12]}, recipe {spec.recipe_hash[:16]})"
        )
        return tree
    if state.startswith("dirty"):
        aside = tree.with_name(f"{tree.name}.dirty-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        os.replace(tree, aside)
        log(f"work tree {tree} was {state}; moved it to {aside} and preparing a clean one")
    elif state != "missing":
        discard(tree, log, state)
    log(f"preparing {spec.impl}: {spec.repo} at {spec.commit} ({spec.commit_full}) into {tree}")
    _build_tree(spec, mirror, tree, jobs_dir, log)
    return tree


def prepare(
    spec: JobSpec,
    cache_dir: str | Path,
    *,
    jobs_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    fetch_timeout: float | None = 1800,
) -> JobSpec:
    """Return a copy of SPEC with `checkout_dir`, `commit_full` and `recipe_hash` filled in.

    Rows with a repository get the shared mirror (cloned or fetched as needed), the full commit and
    a patched work tree for their recipe; repo-less rows (torchvision) only get their recipe hash.
    Raises CommitNotFound, PatchError or GitError with a message naming the way out.  A cached clone
    that git cannot read is discarded and cloned again, once.
    """
    say = _say(log)
    if spec.blocker:
        raise StackBlocked(spec.blocker)
    spec = dataclasses.replace(spec)
    if not spec.repo:
        spec.commit_full = None
        spec.recipe_hash = recipe_hash(spec, jobs_dir)
        return spec
    cache = Path(cache_dir).expanduser().resolve()
    with locked(cache / "locks" / f"{repo_key(spec.repo)}.lock"):
        for attempt in (1, 2):
            mirror = ensure_mirror(spec.repo, cache, say, timeout=fetch_timeout)
            try:
                spec.commit_full = resolve_commit(spec.repo, mirror, spec.commit, say, timeout=fetch_timeout)
                if spec.pinned_commit and rev_parse(mirror, spec.pinned_commit)[0] == spec.commit_full:
                    spec.pinned_commit = None  # the pin by another name (a tag, a longer hash): not a replacement
                if spec.pinned_commit:
                    say(f"{spec.impl}: running {spec.commit_full[:12]} in place of the row's pin {spec.pinned_commit}")
                spec.recipe_hash = recipe_hash(spec, jobs_dir)
                tree = _ensure_tree(spec, mirror, cache, jobs_dir, say)
                break
            except GitError as exc:
                if attempt == 2:
                    raise
                discard(
                    mirror,
                    say,
                    f"git failed in the cached clone of {normalize_repo(spec.repo)} ({exc}); cloning it again",
                )
    spec.checkout_dir = str(tree)
    return spec
