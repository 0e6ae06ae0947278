"""Execute stage: run a row's job script, capture stdout+stderr into `train.log`, and stop it on time.

The log is the measurement, so capture is byte-exact (no re-encoding, `\\r` progress redraws kept) and
unbuffered (`PYTHONUNBUFFERED=1`). The child runs in its own process group so that a time limit, a
cancellation or "the window is covered, stop training" ends every rank it spawned; a watchdog
(process.watch_group) ends that group too if the launcher itself is killed outright.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

from ..safeio import open_append
from .process import stop_group, watch_group

KILL_GRACE_S = 10.0


@dataclass
class ExecResult:
    returncode: int | None
    elapsed_s: float
    tail: str  # last lines of the output, for error messages
    timed_out: bool = False
    stopped_early: bool = False  # we stopped it because its log covered the window
    cancelled: bool = False  # a signal asked us to stop
    write_error: str | None = None  # the captured output could not be written (a full disk): we stopped it


#: the stop reason when the output can no longer be written
LOG_UNWRITABLE = "log unwritable"


class Execution:
    """One running command. `stop(reason)` ends its whole process group (SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        script: str,
        cwd: str | Path,
        env: dict[str, str],
        log_path: str | Path,
        echo: TextIO | None = None,
        tail_lines: int = 40,
    ):
        self.script, self.cwd, self.log_path = script, Path(cwd), Path(log_path)
        self.env = env
        self.echo = echo
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self._stop_reason: str | None = None
        self.write_error: str | None = None
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Execution":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)

        self._log = open_append(self.log_path)
        self.proc = subprocess.Popen(
            ["bash", "-c", self.script],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._watchdog = watch_group(self.proc.pid, KILL_GRACE_S)  # the command dies with us, even by SIGKILL
        self._t0 = time.monotonic()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        return self

    def _pump(self) -> None:
        """Copy the command's output to the log (and the echo), keeping the tail for messages.

        A write that fails (ENOSPC, EFBIG, EIO) stops the command: a log that cannot grow cannot measure,
        and a pump that died would leave the command blocked on a full pipe until its time limit. The pipe
        is still drained (into the tail only) until the command is gone."""
        assert self.proc and self.proc.stdout
        partial = b""
        for chunk in iter(lambda: self.proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
            if self.write_error is None:
                try:
                    _write_all(self._log, chunk)
                except OSError as e:
                    self.write_error = f"cannot write {self.log_path}: {e.strerror or e}"
                    self.stop(LOG_UNWRITABLE)
            if self.echo is not None:
                try:
                    self.echo.write(chunk.decode("utf-8", "replace"))
                    self.echo.flush()
                except (OSError, ValueError):
                    pass
            partial += chunk
            *lines, partial = partial.replace(b"\r", b"\n").split(b"\n")
            for line in lines:
                if line.strip():
                    self._tail.append(line.decode("utf-8", "replace"))
        if partial.strip():
            self._tail.append(partial.decode("utf-8", "replace"))

    def stop(self, reason: str) -> None:
        """Ask the command to end: SIGTERM to its process group, SIGKILL after a grace period."""
        if self._stop_reason is None:
            self._stop_reason = reason
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        stop_group(proc.pid, KILL_GRACE_S, lambda: proc.poll() is not None, background=True)

    def wait(
        self, timeout_s: float | None = None, poll: Callable[[], bool] | None = None, poll_every_s: float = 5.0
    ) -> ExecResult:
        """Wait for the end; `poll()` returning True (checked every `poll_every_s`) stops the command early."""
        assert self.proc is not None
        deadline = None if timeout_s is None else self._t0 + timeout_s
        next_poll = time.monotonic() + poll_every_s
        while self.proc.poll() is None:
            now = time.monotonic()
            if deadline is not None and now >= deadline and self._stop_reason is None:
                self.stop("timeout")
            if poll is not None and now >= next_poll and self._stop_reason is None:
                next_poll = now + poll_every_s
                try:
                    if poll():
                        self.stop("covered")
                except Exception:  # a failing progress check must never kill a training
                    pass
            try:
                self.proc.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
        self._watchdog.kill()
        self._watchdog.wait()
        self._reader.join(timeout=30)
        try:
            self._log.close()
        except OSError as e:  # the last bytes could not be flushed
            self.write_error = self.write_error or f"cannot write {self.log_path}: {e.strerror or e}"
        return ExecResult(
            returncode=self.proc.returncode,
            elapsed_s=time.monotonic() - self._t0,
            tail="\n".join(self._tail),
            timed_out=self._stop_reason == "timeout",
            stopped_early=self._stop_reason == "covered",
            cancelled=self._stop_reason not in (None, "timeout", "covered", LOG_UNWRITABLE),
            write_error=self.write_error,
        )


def _write_all(f, data: bytes) -> None:
    """Write every byte (an unbuffered file may take part of a chunk); raise what the file system says."""
    view = memoryview(data)
    while view:
        n = f.write(view)
        if not n:
            raise OSError(f"wrote nothing of {len(view)} bytes")
        view = view[n:]


def child_env(extra: dict[str, str], python_first: bool = True) -> dict[str, str]:
    """The command's environment: ours, the row's env vars, unbuffered Python, and (for `host`
    environments) this interpreter's bin directory first on PATH so `python`/`torchrun` are ours."""
    env = dict(os.environ)
    env.update({k: str(v) for k, v in extra.items()})
    env["PYTHONUNBUFFERED"] = "1"
    if python_first:
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env
