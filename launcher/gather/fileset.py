"""A set of files (table.rst, table.md, results.csv) replaced as one: readers see one gather's set or
another's, never a mix, whoever writes at the same time and wherever a writer dies.

Each file alone is easy (temporary file + rename); a *set* needs one rename that switches all of it.
So every write goes to a fresh generation directory, `DIR/.tables/gen-*`, and one symlink,
`DIR/.tables/current`, is renamed onto the new generation once it is complete; the names a reader
opens, `DIR/table.rst` and so on, are fixed symlinks into `.tables/current/`.  Two gathers writing
one DIR: each fills its own generation and the later rename wins whole.  A gather that dies before
its rename leaves the previous set as it was.  (A DIR from before this layout holds plain files: the
first write replaces each by its symlink, one rename each, after the new generation is current.)

Generations no longer current are removed once they are `KEEP_S` old (never one a concurrent writer
may still be filling).  Where the filesystem refuses symlinks the files are written one by one, each
atomically, as before.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

from ..rundir import atomic_write_text

GENERATIONS = ".tables"
CURRENT = "current"
KEEP_S = 120


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _symlink_over(target: str, path: Path) -> None:
    """Make `path` a symlink to `target`, replacing whatever is there in one rename."""
    if path.is_symlink() and os.readlink(path) == target:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.link")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_generation(gens: Path, files: dict[str, str]) -> Path:
    gen = gens / f"gen-{time.time_ns()}-{os.getpid()}-{secrets.token_hex(4)}"
    os.mkdir(gen)  # mode per the umask, like the files in it
    try:
        for name, text in files.items():
            with open(gen / name, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        _fsync_dir(gen)
    except BaseException:
        shutil.rmtree(gen, ignore_errors=True)
        raise
    return gen


def _prune(gens: Path, keep: str) -> None:
    try:
        keep_too = os.readlink(gens / CURRENT)
    except OSError:
        keep_too = keep
    now = time.time()
    for old in gens.glob("gen-*"):
        try:
            if old.name not in (keep, keep_too) and now - old.lstat().st_mtime > KEEP_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue


def write_set(out_dir: str | os.PathLike, files: dict[str, str]) -> list[Path]:
    """Write `files` (name -> text) into `out_dir` as one set (see the module docstring)."""
    out = Path(out_dir)
    gens = out / GENERATIONS
    gens.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a generation pruned by another writer before it became current: write it again
        gen = _write_generation(gens, files)
        try:
            _symlink_over(gen.name, gens / CURRENT)
        except OSError:  # no symlinks here: one file at a time, each whole
            shutil.rmtree(gen, ignore_errors=True)
            for name, text in files.items():
                atomic_write_text(out / name, text)
            return [out / name for name in files]
        if gen.is_dir():
            break
    _fsync_dir(gens)
    for name in files:
        _symlink_over(f"{GENERATIONS}/{CURRENT}/{name}", out / name)
    _fsync_dir(out)
    _prune(gens, gen.name)
    return [out / name for name in files]
