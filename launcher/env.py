"""The seed rows' own environments: make them, and check them, from the same config the runs use.

    python -m launcher.env create [impl=a,b] [envs_dir=/shared/envs] [--print] [--force]
    python -m launcher.env check  [impl=a,b]

`create` runs each row's `impl.environment.create` lines (conda env create from jobs/<row>/environment.yml,
then what conda's pip section cannot do: mmcv with --no-build-isolation, apex at its 2020 commit, Horovod
built against the env's TensorFlow and MPI, SimpleDet's MXNet from source) on a host with internet, the
login node usually; the compute nodes then need none. A row whose environment is already there is
skipped (`--force` runs its lines anyway). `$LAUNCHER_TREE` is the row's prepared checkout (SimpleDet's
operators are compiled into MXNet from it). `--print` only prints the lines.

`check` runs the node's software probe (launcher/node/software.py) here, in each row's environment, and prints
the table of wanted vs found that a job would fail with.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from .spec import JobSpec
from .node.environment import environment_problems
from .prepare import prepare
from .node import software
from .cli import plan_rows


def _present(spec: JobSpec) -> bool:
    return not environment_problems(spec)


def create(cfg, spec: JobSpec, *, dry: bool, force: bool) -> int:
    lines = list((spec.environment or {}).get("create") or [])
    if not lines:
        print(f"{spec.impl}: impl.environment.create is empty (environment kind {spec.environment.get('kind')})")
        return 0
    if _present(spec) and not force:
        print(f"{spec.impl}: {spec.environment.get('path')} is there already (--force runs its lines anyway)")
        return 0
    env = dict(os.environ)
    if spec.repo and any("LAUNCHER_TREE" in line for line in lines) and not dry:
        env["LAUNCHER_TREE"] = prepare(spec, cfg.cache_dir, log=print).checkout_dir or ""
    for i, line in enumerate(lines, 1):
        print(f"{spec.impl} [{i}/{len(lines)}]: {line}", flush=True)
        if dry:
            continue
        rc = subprocess.run(["bash", "-c", f"set -eo pipefail; {line}"], env=env).returncode
        if rc != 0:
            print(
                f"{spec.impl}: step {i} failed (exit {rc}); fix it and run again (--force if the environment "
                f"exists half-made)",
                file=sys.stderr,
            )
            return 1
    return 0


def check(spec: JobSpec) -> int:
    res = software.check(spec)
    if res is None:
        print(f"{spec.impl}: no software to check (impl.environment.software is empty or check=false)")
        return 0
    print(f"{spec.impl} ({res.where}): " + ("ok" if res.ok else "NOT the published stack"))
    print(res.error or res.table())
    return 0 if res.ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m launcher.env", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("create", "check"))
    ap.add_argument("overrides", nargs="*", help="config overrides as for python -m launcher (impl=a,b envs_dir=...)")
    ap.add_argument("--print", dest="dry", action="store_true", help="print the lines, run nothing")
    ap.add_argument("--force", action="store_true", help="run the lines even when the environment is there")
    args = ap.parse_args(argv)

    rc = 0
    for cfg, spec in plan_rows(args.overrides):
        rc = max(rc, create(cfg, spec, dry=args.dry, force=args.force) if args.action == "create" else check(spec))
    return rc


if __name__ == "__main__":
    sys.exit(main())
