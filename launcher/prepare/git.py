"""Thin helpers around the `git` command line (a well-kept tool; no GitPython needed).

One shared mirror clone per repository lives in ``<cache_dir>/repos/``; it is fetched only when a
configured commit is missing, so a warm prepare never touches the network.  Commands run with
``LC_ALL=C`` (so messages can be parsed) and ``GIT_TERMINAL_PROMPT=0`` (so a private URL fails with
a message instead of waiting for a password on a login node).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Sequence

from .errors import CommitNotFound, GitError

_FULL_HASH = re.compile(r"^[0-9a-f]{40}$")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(LC_ALL="C", LANG="C", GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true")
    return env


def git(
    args: Sequence[str],
    cwd: str | Path | None = None,
    check: bool = True,
    input: bytes | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """Run `git ARGS` and return the completed process (text output); raise GitError naming the command."""
    cmd = ["git", *args]
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, env=_env(), input=input, timeout=timeout)
    except FileNotFoundError as exc:  # pragma: no cover - git is a hard requirement
        raise GitError("git is not installed (or not on PATH); the prepare stage needs it") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"`{' '.join(cmd)}` took longer than {timeout:.0f} s (in {cwd})") from exc
    out = subprocess.CompletedProcess(
        cmd, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    )
    if check and out.returncode != 0:
        raise GitError(f"`{' '.join(cmd)}` failed (exit {out.returncode}) in {cwd}: {out.stderr.strip()}")
    return out


def normalize_repo(repo: str) -> str:
    """The repository's identity as a string: an absolute path for local mirrors, the URL otherwise
    (without a trailing slash). Used to key the shared clone, so two spellings of one path share it."""
    repo = repo.strip()
    if "://" in repo or re.match(r"^[\w.-]+@[\w.-]+:", repo):  # URL or scp-like ssh address
        return repo.rstrip("/")
    if repo.startswith("file:"):
        repo = repo[len("file:") :]
    return str(Path(repo).expanduser().resolve())


def repo_key(repo: str) -> str:
    """A readable, collision-free directory name for a repository: `<basename>-<12 hex of the URL>`."""
    norm = normalize_repo(repo)
    base = re.sub(r"\.git$", "", norm.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]) or "repo"
    base = re.sub(r"[^\w.-]", "_", base)
    return f"{base}-{hashlib.sha256(norm.encode()).hexdigest()[:12]}"


def _healthy_mirror(path: Path) -> bool:
    if not (path / "HEAD").is_file() or not (path / "objects").is_dir():
        return False
    out = git(["rev-parse", "--is-bare-repository"], cwd=path, check=False)
    return out.returncode == 0 and out.stdout.strip() == "true"


def discard(path: Path, log=None, why: str = "") -> None:
    """Remove a broken cache entry: first renamed out of the way (atomic), then deleted."""
    if not path.exists() and not path.is_symlink():
        return
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}-{time.time_ns()}")
    os.replace(path, trash)
    if log:
        log(f"removed {path}{': ' + why if why else ''}")
    shutil.rmtree(trash, ignore_errors=True)


def ensure_mirror(repo: str, cache_dir: Path, log=None, timeout: float | None = None) -> Path:
    """The shared bare mirror of REPO under cache_dir/repos/, cloned on first use.

    A directory that is not a readable bare repository (an interrupted clone, a deleted objects
    folder) is discarded and cloned again. The clone goes to a temporary name and is renamed into
    place when complete, so no other process ever sees half a clone.  Call under `locked(...)`.
    """
    path = cache_dir / "repos" / f"{repo_key(repo)}.git"
    if path.exists():
        if _healthy_mirror(path):
            return path
        discard(path, log, "not a readable git repository (interrupted clone or corrupt cache)")
    path.parent.mkdir(parents=True, exist_ok=True)
    source = normalize_repo(repo)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    for stale in path.parent.glob(f".tmp-{path.name}-*"):  # a killed clone's leftovers (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    if log:
        log(f"cloning {source} into {path}")
    try:
        git(["clone", "--mirror", "--quiet", source, str(tmp)], timeout=timeout)
    except GitError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise GitError(
            f"cannot clone {source}: {exc}. Check impl.repo (any git URL, or the path of a "
            f"local mirror on a cluster without internet)"
        ) from None
    os.replace(tmp, path)
    return path


def rev_parse(mirror: Path, rev: str) -> tuple[str | None, str]:
    out = git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], cwd=mirror, check=False)
    if out.returncode == 0:
        return out.stdout.strip(), ""
    # --quiet hides the reason; ask again without it for an ambiguity message
    loud = git(["rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}"], cwd=mirror, check=False)
    return None, loud.stderr.strip()


def resolve_commit(repo: str, mirror: Path, commit: str, log=None, timeout: float | None = None) -> str:
    """The full 40-hex hash of COMMIT (a tag, a branch, a full or abbreviated hash) in the mirror.

    Fetches from the origin only when the commit is missing, then tries once more (a full hash that
    no ref advertises is fetched by name, which GitHub allows). An ambiguous abbreviation or a commit
    that is still missing raises CommitNotFound with what was fetched and where to fix it.
    """
    if not commit or not str(commit).strip():
        raise CommitNotFound(f"impl.repo is {repo} but impl.commit is empty; pin a tag or a commit hash")
    commit = str(commit).strip()
    full, why = rev_parse(mirror, commit)
    if full:
        return full
    if "ambiguous" in why:
        raise CommitNotFound(f"commit {commit} is ambiguous in {repo} ({why}); give more hex digits in impl.commit")
    source = normalize_repo(repo)
    if log:
        log(f"commit {commit} not in the cache; fetching {source}")
    fetched = git(["fetch", "--quiet", "--prune", "--tags", "origin"], cwd=mirror, check=False, timeout=timeout)
    notes = [
        f"fetched all refs and tags from {source}"
        if fetched.returncode == 0
        else f"fetching {source} failed: {fetched.stderr.strip()}"
    ]
    full, why = rev_parse(mirror, commit)
    if not full and _FULL_HASH.match(commit.lower()) and fetched.returncode == 0:
        by_name = git(["fetch", "--quiet", "origin", commit], cwd=mirror, check=False, timeout=timeout)
        notes.append(
            "also asked for the hash by name" + ("" if by_name.returncode == 0 else f" ({by_name.stderr.strip()})")
        )
        full, why = rev_parse(mirror, commit)
    if full:
        return full
    if "ambiguous" in why:
        raise CommitNotFound(f"commit {commit} is ambiguous in {repo} ({why}); give more hex digits in impl.commit")
    # before blaming the config, make sure the clone itself is sound (missing objects look like a missing commit)
    fsck = git(
        ["fsck", "--connectivity-only", "--no-progress", "--no-dangling"], cwd=mirror, check=False, timeout=timeout
    )
    if fsck.returncode != 0:
        raise GitError(f"the cached clone {mirror} is corrupt: {(fsck.stderr or fsck.stdout).strip()[:500]}")
    raise CommitNotFound(
        f"commit {commit} not found in {repo}; {'; '.join(notes)}; check impl.commit "
        f"(a tag, or a full or abbreviated hash that exists in that repository)"
    )
