"""A log file read as a stream of lines, in bounded memory, and only when it is a regular file (issue 21, class 5).

The node used to read a row's whole log into one string, then split it into a list of lines, to parse
it: a 596 MB log took 2.5 GB resident and 40 s more, one 80 MB line 84 s; `python -m launcher.parse` on
a FIFO blocked for ever, and on `/dev/zero` ended in a MemoryError.  Now `read_log(path)` returns a
`LogText`, which the parsers' `clean_lines` iterates line by line (read in 1 MiB blocks, each pass a
fresh read of the file), so what a parse holds is its records, not the text:

* a line longer than `MAX_LINE` bytes keeps its first `MAX_LINE` bytes (no record of any format is
  near that long; the rest of such a line is read past, never held);
* only a regular file is read: a FIFO, a device, a socket is refused (`NotARegularFile`, a `BadRequest`:
  exit 2 from the command line), opened without blocking so a FIFO nobody writes cannot hang the caller.

Code that wants a string (a test, a parser given text) still passes one: `clean_lines` takes both.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from pathlib import Path
from typing import Iterator

from .errors import BadRequest

#: the longest line kept whole (bytes); longer ones are cut to this
MAX_LINE = 1 << 20
#: a stats.json (tensorpack) is parsed whole only up to this size
MAX_WHOLE = 256 << 20


class NotARegularFile(BadRequest):
    """The path is a FIFO, a device or a socket: never read as a log."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike):
    """The file at `path` opened for binary reading, refused unless it is a regular file (never blocks)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(
                f"{path} is {_kind(mode)}, not a regular file: the launcher reads only log files "
                "(give the file the row's log is written to)"
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb", buffering=1 << 20)


class LogText:
    """A log file, lazily: iterating gives its raw lines (str, without the newline), each at most MAX_LINE bytes."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        open_regular(self.path).close()  # refuse a FIFO, a device, a missing file now, not on first use

    def __iter__(self) -> Iterator[str]:
        with open_regular(self.path) as f:
            while True:
                raw = f.readline(MAX_LINE)
                if not raw:
                    return
                if not raw.endswith(b"\n") and len(raw) >= MAX_LINE:
                    while True:  # read past the rest of an over-long line, holding none of it
                        rest = f.readline(MAX_LINE)
                        if not rest or rest.endswith(b"\n"):
                            break
                yield raw.rstrip(b"\n").decode("utf-8", "replace")

    def whole_if(self, first: str, limit: int = MAX_WHOLE) -> str | None:
        """The whole text, when the file is at most `limit` bytes and its first non-blank character is `first`."""
        with open_regular(self.path) as f:
            head = f.read(4096).lstrip()
            if not head.startswith(first.encode()) or os.fstat(f.fileno()).st_size > limit:
                return None
            f.seek(0)
            return f.read().decode("utf-8", "replace")

    def __str__(self) -> str:  # pragma: no cover - for messages only
        return str(self.path)


class LazyLines:
    """Random access to the recent lines of a stream (what a parser that looks a few lines ahead needs),
    holding only a window of them."""

    def __init__(self, lines: Iterator[str], keep: int = 256) -> None:
        self._it, self._buf, self._base, self._keep = iter(lines), deque(), 0, keep

    def has(self, i: int) -> bool:
        while i >= self._base + len(self._buf):
            try:
                self._buf.append(next(self._it))
            except StopIteration:
                return False
            while len(self._buf) > self._keep and self._base < i - self._keep // 2:
                self._buf.popleft()
                self._base += 1
        return i >= self._base

    def __getitem__(self, i: int) -> str:
        if not self.has(i):
            raise IndexError(i)
        return self._buf[i - self._base]
