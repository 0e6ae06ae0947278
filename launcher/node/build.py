"""build_once(): a row's build steps (`pip install -e .`, `python setup.py build develop`, `make`),
run once per recipe on the node that has the toolchain, in the row's environment.

A marker file, written atomically and only after every step succeeded, records that the recipe is
built; a later run of the same recipe skips the build.  Nodes of a multi-node job (or rows of a
sweep sharing a tree) take a file lock, so one builds and the others wait and then skip.  A failed
step raises BuildError with the step, its exit status and the tail of its output; no marker is
written, so the next run tries again.
"""

from __future__ import annotations

import collections
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, TextIO, Union

from ..locks import locked
from ..rundir import atomic_write_json, now_iso
from ..safeio import open_append
from ..spec import JobSpec
from .environment import command_environ, wrap_command
from .compiled import after_build, before_build, build_log_path, is_compiled
from .venv import BuildError, constraints_file, ensure_venv, is_managed

Log = Union[Callable[[str], None], TextIO, str, Path, None]
TAIL = 40


def _sink(log: Log) -> tuple[Callable[[str], None], Callable[[], None]]:
    """A line writer (and its closer) for LOG: a callable, an open text file, a path, or None."""
    if log is None:
        return (lambda s: None), (lambda: None)
    if callable(log) and not hasattr(log, "write"):
        return log, (lambda: None)
    if isinstance(log, (str, Path)):
        import io

        fh = io.TextIOWrapper(io.BufferedWriter(open_append(log)), encoding="utf-8")
        return (lambda s: (fh.write(s + "\n"), fh.flush())), fh.close
    return (lambda s: (log.write(s + "\n"), log.flush())), (lambda: None)


def _tee(write: Callable[[str], None], close: Callable[[], None], path: Path):
    """WRITE and also append to PATH (the build's own log, kept with the build)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a", encoding="utf-8")

    def both(s: str) -> None:
        write(s)
        fh.write(s + "\n")
        fh.flush()

    def close_both() -> None:
        fh.close()
        close()

    return both, close_both


def marker_path(spec: JobSpec) -> Path:
    """Where the build marker of SPEC's recipe lives: in the tree's .git dir (outside the code, gone
    with the tree), or in the work dir for repo-less rows."""
    tag = (spec.recipe_hash or "unhashed")[:16]
    if spec.checkout_dir and (Path(spec.checkout_dir) / ".git").is_dir():
        return Path(spec.checkout_dir) / ".git" / f"launcher-built-{tag}.json"
    return spec.exec_dir / f".launcher-built-{tag}.json"


def build_once(spec: JobSpec, log: Log = None) -> bool:
    """Run SPEC's build steps unless its recipe is already built. Returns True when it built.

    A build that compiles CUDA extensions for a GPU hardware group (launcher/node/compiled.py) gets its
    toolchain found and checked first, and its device code proven after; its output is also kept in a log
    file beside the marker."""
    if not spec.build and not is_managed(spec):
        return False
    write, close = _sink(log)
    if is_compiled(spec):
        write, close = _tee(write, close, build_log_path(spec))
    marker = marker_path(spec)
    try:
        with locked(marker.with_name(marker.name + ".lock")):
            if is_managed(spec) and ensure_venv(spec, write) and marker.is_file():
                marker.unlink()  # a new venv holds nothing of the old build: build again
            if marker.is_file():
                write(f"[launcher] build: already done for recipe {(spec.recipe_hash or '')[:16]} ({marker})")
                return False
            workdir = spec.exec_dir
            env = command_environ(spec)  # the same process environment the command gets (node.py)
            if is_managed(spec) and (cons := constraints_file(spec)) is not None:
                env["PIP_CONSTRAINT"] = str(cons)  # every pip of the build obeys the row's pins too
            t0 = time.time()
            compiled = before_build(spec, env, write) if is_compiled(spec) else {}  # toolchain checks, CUDA_HOME
            for i, step in enumerate(spec.build, 1):
                write(f"[launcher] build step {i}/{len(spec.build)} in {workdir}: {step}")
                tail: collections.deque[str] = collections.deque(maxlen=TAIL)
                proc = subprocess.Popen(
                    ["bash", "-c", wrap_command(spec, step)],
                    cwd=workdir,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    errors="replace",
                )
                assert proc.stdout is not None
                for line in proc.stdout:
                    line = line.rstrip("\n")
                    tail.append(line)
                    write(line)
                rc = proc.wait()
                if rc != 0:
                    raise BuildError(
                        f"build step {i}/{len(spec.build)} `{step}` failed (exit {rc}) in {workdir}; "
                        f"last {len(tail)} lines of its output:\n" + "\n".join(tail)
                    )
            if is_compiled(spec):
                compiled.update(after_build(spec, write))  # device code for every target architecture, or raise
            atomic_write_json(
                marker,
                {
                    "recipe_hash": spec.recipe_hash,
                    "steps": list(spec.build),
                    "built_at": now_iso(),
                    "host": socket.gethostname(),
                    "seconds": round(time.time() - t0, 1),
                    **compiled,
                },
            )
            write(f"[launcher] build: done in {time.time() - t0:.1f} s; marker {marker}")
            return True
    finally:
        close()
