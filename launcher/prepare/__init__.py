"""The prepare stage: pinned checkouts, patches, recipe hashes, input checks, environments, job scripts.

Public API (what plan / node / app call):

- `prepare(spec, cache_dir) -> JobSpec`     submit host: checkout + patches; fills checkout_dir,
                                            commit_full, recipe_hash
- `recipe_hash(spec) -> str`                content hash of the row's code and command
- `check_inputs(spec) -> list[str]`         missing data / weights / environment, before submission
- `input_warnings(spec) -> list[str]`       what the row reads only after its window
- `wrap_command(spec, command) -> str`      the command in the row's environment (host, venv, conda, container)
- `build_once(spec, log)`                   node: the build steps, once per recipe (marker file)
- `job_script(spec) -> str`                 the exact bash script the node runs (and dry_run prints)
"""

from .build import build_once, marker_path
from .checkout import prepare, tree_path, tree_state
from .environment import command_environ, environment_for, wrap_command
from .errors import BuildError, CommitNotFound, GitError, PatchError, PrepareError
from .inputs import check_inputs, input_warnings
from .recipe import recipe_document, recipe_hash
from .script import job_script

__all__ = [
    "prepare", "recipe_hash", "recipe_document", "check_inputs", "input_warnings", "wrap_command",
    "command_environ", "environment_for",
    "build_once", "marker_path", "job_script", "tree_path", "tree_state",
    "PrepareError", "GitError", "CommitNotFound", "PatchError", "BuildError",
]
