"""The prepare stage: pinned checkouts, patches, recipe hashes, input checks, environments, job scripts.

Public API (what plan / node / app call):

- `prepare(spec, cache_dir) -> JobSpec`     submit host: checkout + patches; fills checkout_dir,
                                            commit_full, recipe_hash
- `recipe_hash(spec) -> str`                content hash of the row's code and command
- `check_inputs(spec) -> list[str]`         missing data / weights / environment, before submission
- `input_warnings(spec) -> list[str]`       what the row reads only after its window

What runs on the node (environment, venv, build, job script) is in launcher/node/.
"""

from .checkout import prepare, tree_path, tree_state
from .errors import CommitNotFound, GitError, PatchError, PrepareError
from .inputs import check_inputs, input_warnings
from .recipe import recipe_document, recipe_hash

__all__ = [
    "prepare",
    "recipe_hash",
    "recipe_document",
    "check_inputs",
    "input_warnings",
    "tree_path",
    "tree_state",
    "PrepareError",
    "GitError",
    "CommitNotFound",
    "PatchError",
]
