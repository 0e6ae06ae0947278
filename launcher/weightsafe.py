"""Downloads the weights step can trust (issue 21, class 4); used by launcher/weights.py.

* Whole or nothing: a server that promises N bytes (Content-Length) and sends fewer is a failed
  download, never a file whose checksum gets locked; so is one whose whole transfer takes longer than
  the deadline (`read_whole`: every read is bounded by the per-read timeout *and* what is left of the
  deadline, so a server that sends a byte a second is given up on).
* `file://` sources: only a regular file that every user of the machine may read already (a local mirror
  of public weights).  A private file (no read bit for others: /etc/shadow, ~/.ssh/id_*, another
  user's data) is refused, so `weights fetch` never turns a file only its owner can read into a copy
  under weights_dir that others can (`source_problem`).
* `dest` (where under weights_dir a file goes) must be a relative path that stays inside weights_dir
  (`dest_path`): no `..`, no absolute path, no link out of it.
"""

from __future__ import annotations

import os
import socket
import stat
import time
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import BinaryIO


def _error(msg: str):
    from .weights import WeightsError

    return WeightsError(msg)


def dest_path(weights_dir: str | os.PathLike, dest: str) -> Path:
    """weights_dir/dest, refused unless `dest` is a plain relative path that stays inside weights_dir."""
    d = PurePosixPath(str(dest))
    if not str(dest) or d.is_absolute() or ".." in d.parts or "\0" in str(dest):
        raise _error(
            f"weights dest {dest!r} must be a relative path inside weights_dir, without '..' "
            "(impl.weights[].dest): fix the row's config"
        )
    root = Path(weights_dir)
    path = root / d
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise _error(f"{path} leads out of weights_dir ({real}): a link inside weights_dir points elsewhere; remove it")
    return path


def source_problem(url: str) -> str | None:
    """Why the weights step will not read `url`, or None."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "file", "ftp"):
        return f"scheme {parts.scheme or '(none)'!r} is not one the weights step fetches (http, https, ftp, file)"
    if parts.scheme != "file":
        return None
    path = urllib.request.url2pathname(parts.path)
    try:
        st = os.stat(path)
    except OSError as e:
        return f"cannot read {path}: {e.strerror or e}"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if not st.st_mode & stat.S_IROTH:
        return (
            f"{path} is private (mode {stat.filemode(st.st_mode)}: others may not read it); the weights step "
            "copies only files every user here may read already, so it never makes a private file readable "
            "to others. Copy it into weights_dir yourself if that is what you mean, then "
            "python -m launcher.weights check"
        )
    return None


def read_whole(url: str, out: BinaryIO, timeout: float, deadline_s: float) -> int:
    """Copy `url` into `out`: all the bytes its Content-Length promises, within `deadline_s`; else an error."""
    start = time.monotonic()

    def left() -> float:
        return deadline_s - (time.monotonic() - start)

    got = 0
    with urllib.request.urlopen(url, timeout=max(0.1, min(timeout, deadline_s))) as r:
        length = r.headers.get("Content-Length") if hasattr(r, "headers") else None
        read = getattr(r, "read1", None) or r.read
        sock = _socket_of(r)
        while True:
            if left() <= 0:
                raise _error(
                    f"the download took longer than its deadline of {deadline_s:.0f} s ({got} bytes so far; "
                    "--deadline); nothing was kept"
                )
            if sock is not None:
                sock.settimeout(max(0.05, min(timeout, left())))
            try:
                block = read(1 << 16)
            except (socket.timeout, TimeoutError):
                if left() <= 0:
                    continue
                raise
            if not block:
                break
            out.write(block)
            got += len(block)
    if length is not None and str(length).isdigit() and got != int(length):
        raise _error(
            f"the server promised {int(length)} bytes (Content-Length) and sent {got}: a truncated "
            "download; nothing was kept or recorded"
        )
    return got


def _socket_of(r):
    try:
        return r.fp.raw._sock  # http.client.HTTPResponse -> socket.SocketIO -> socket
    except AttributeError:
        return None
