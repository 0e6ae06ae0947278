"""Writes that never follow a link the launcher did not make (issue 21, class 2).

Anyone who can write a run dir (a group-shared outputs tree, the row's own command before a rerun)
could plant `train.log -> ~/.bashrc` there; a plain `open(path, "w")` would then overwrite the link's
target with whatever the launcher writes.  Every file the launcher writes in a place others may write
goes through one of these:

* `open_new` / `open_append`: `O_NOFOLLOW` (a symlink as the last component is an error, ELOOP), and
  the file must be a regular file the caller owns (a planted hard link to another user's file, a FIFO,
  a device are refused);
* `write_new_text`: a whole file written by creating it exclusively (`O_EXCL`, which never follows a
  link) under a temporary name and renaming it over the old name; `rename` replaces a planted link
  itself, never its target;
* `refuse_link`: for the directories the launcher writes into (a run dir that is itself a link to
  elsewhere is refused, naming it).

`PlantedFile` (an OSError) names the path and says what to do.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class PlantedFile(OSError):
    """A path the launcher was about to write is a link (or not a regular file of its user)."""


def _planted(path: Path, what: str) -> PlantedFile:
    return PlantedFile(
        errno.ELOOP,
        f"{path} is {what}, which the launcher did not make; it never writes through "
        "one (it could overwrite any file you can write). Remove it and run again",
        str(path),
    )


def _open(path: str | os.PathLike, flags: int, mode: int = 0o666) -> int:
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0), mode)
    except OSError as e:
        if e.errno == errno.ELOOP or (e.errno == errno.EEXIST and path.is_symlink()):
            raise _planted(path, f"a symbolic link to {os.readlink(path) if path.is_symlink() else '?'}") from None
        if e.errno == errno.ENXIO:  # O_NONBLOCK on a FIFO nobody reads
            raise _planted(path, "a FIFO") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _planted(path, "not a regular file")
        if st.st_nlink > 1:
            raise _planted(path, f"a hard link ({st.st_nlink} names for one file)")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise _planted(path, f"a file of another user (uid {st.st_uid})")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_append(path: str | os.PathLike, mode: int = 0o666):
    """`open(path, "ab")` unbuffered, that refuses a planted link (creates the file when missing)."""
    return os.fdopen(_open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode), "ab", buffering=0)


def open_new(path: str | os.PathLike, mode: int = 0o666):
    """`open(path, "wb")` that refuses a planted link: truncates a regular file of ours, creates a missing one."""
    return os.fdopen(_open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb")


def append_text(path: str | os.PathLike, text: str) -> None:
    """One short O_APPEND write (atomic for a manifest line) that refuses a planted link."""
    with open_append(path) as f:
        f.write(text.encode("utf-8"))


def write_new_text(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text` (temporary file created with O_EXCL, renamed over it): a planted link at
    `path` is replaced, its target never touched."""
    from .rundir import atomic_write_text

    atomic_write_text(path, text)


def refuse_link(directory: str | os.PathLike) -> None:
    """Raise PlantedFile when `directory` itself is a symbolic link."""
    d = Path(directory)
    if d.is_symlink():
        raise _planted(d, f"a symbolic link to {os.readlink(d)}")
