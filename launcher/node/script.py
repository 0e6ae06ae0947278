"""job_script(): the exact bash script the node runs for a row; `dry_run=true` prints the same text,
so what a user reviews and what runs cannot drift apart.

Order: `cd` to the work dir, export the row's env vars, the link to the row's staged data layout
(impl.dataset.link: `data_setup_lines`; launcher/data/stage.py builds the layout) and the setup lines
(on the node's own shell), then the command wrapped for the row's environment.  Build steps are not in the script:
they run once per recipe through `build_once` (listed here as comments so a dry run shows them).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from ..spec import JobSpec
from .environment import environment_for

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def data_setup_lines(spec: JobSpec) -> list[str]:
    """Job-script lines that link the row's layout into its work tree (impl.dataset.link), on the node."""
    ds = spec.dataset or {}
    if not ds.get("link"):
        return []
    link = ds["link"]
    base = "" if not spec.checkout_dir else f"{shlex.quote(str(Path(spec.checkout_dir)))}/"
    q = shlex.quote(base + link)
    refusal = shlex.quote(f"{link} in the work tree is not a link; the data step links it to {ds['root']}")
    return [
        f'mkdir -p "$(dirname {q})" && {{ test ! -e {q} -o -L {q} || {{ echo {refusal} >&2; exit 2; }}; }} && '
        f"ln -sfn {shlex.quote(ds['root'])} {q}"
    ]


def work_dir_text(spec: JobSpec) -> str:
    """The work dir as the script names it; a repo row not prepared yet gets a placeholder that
    says so (and would fail if run, which is right)."""
    if spec.repo and not spec.checkout_dir:
        return f"<not prepared: checkout of {spec.repo} at {spec.commit}>/{spec.workdir}"
    return str(spec.exec_dir)


def job_script(spec: JobSpec) -> str:
    env = environment_for(spec)
    for k in spec.env or {}:
        if not _NAME.match(str(k)):
            raise ValueError(f"impl.env has {k!r}, which is not a valid environment variable name")
    lines = [
        "#!/usr/bin/env bash",
        f"# launcher job script: {spec.impl} ({spec.title}); written by launcher.prepare.job_script,",
        "# the node runs exactly this text (dry_run=true prints it).",
    ]
    if spec.repo:
        lines.append(
            f"# code: {spec.repo} at {spec.commit}"
            + (f" = {spec.commit_full}" if spec.commit_full else " (not resolved: prepare has not run)")
            + (
                f", {len(spec.patches)} patch(es): {', '.join(p.get('name') or '?' for p in spec.patches)}"
                if spec.patches
                else ""
            )
            + (
                f", stack {spec.stack}: {len(spec.compat_patches)} compat patch(es): "
                f"{', '.join(p.get('name') or '?' for p in spec.compat_patches)}"
                if spec.compat_patches
                else ""
            )
        )
    lines.append(f"# recipe: {spec.recipe_hash or '(not computed yet)'}")
    lines.append(f"# environment: {env.describe()}")
    if spec.build:
        lines.append("# build (run once per recipe by build_once, before this script, in the work dir):")
        lines += [f"#   {step}" for step in spec.build]
    lines += ["set -eo pipefail", f"cd {shlex.quote(work_dir_text(spec))}"]
    lines += [f"export {k}={shlex.quote(str(v))}" for k, v in (spec.env or {}).items()]
    for k in spec.env_pass or []:  # by name only: the value comes from the environment, never from this file
        if not _NAME.match(str(k)):
            raise ValueError(f"impl.env_pass has {k!r}, which is not a valid environment variable name")
        lines.append(f': "${{{k}:?impl.env_pass names {k}, which the submitting environment did not set}}"; export {k}')
    lines += data_setup_lines(spec) + list(spec.setup or [])
    lines.append(env.wrap(spec.command))
    return "\n".join(lines) + "\n"
