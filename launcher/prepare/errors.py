"""The prepare stage's errors: each names what went wrong and the way out, so a sweep stops on the
submit host with a sentence a user can act on instead of a job that fails in a queue a day later."""

from __future__ import annotations


class PrepareError(RuntimeError):
    """Base class: anything that stops a row from being prepared."""


class GitError(PrepareError):
    """A git command failed; carries the command line and git's own message."""


class CommitNotFound(PrepareError):
    """The configured commit / tag / abbreviated hash does not exist in the repository, even after a fetch."""


class PatchError(PrepareError):
    """A patch that does not apply (names the patch, the file and the hunk). The tree is discarded."""


class StackBlocked(PrepareError):
    """The row cannot run on the selected software stack (impl.blocker, or no impl.stacks.<name> entry)."""
