"""One advisory file lock (flock), for whatever the rows of a sweep share: a repository's clone, a
recipe's build, the data stage, the weights directory."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .safeio import open_append


@contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` (created with its parents) for the `with` block, so the rows
    of a sweep that share it do not clone, fetch or build the same thing at once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open_append(lock_path) as fh:  # a lock file planted as a link is refused, never written through
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
