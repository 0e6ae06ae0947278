"""This launcher against hydra-submitit-launcher on the same Slurm, the same stand-in work, side by side.

    pip install -e '.[bench]'          # hydra-submitit-launcher
    python bench/vs_plugin.py [--rows 8] [--iters 40] [--dt 0.5] [--big 200] [--repeat 2]

Work per row (both sides): a STAND-IN that sleeps `--dt` s between `--iters` log records (the torchvision row's
`tvbench iter= t=` line), 1 GPU, 1 CPU. Figures are wall times of the command a user types, start to exit:

* plugin:   `python app.py -m seed=0..N-1 hydra/launcher=submitit_slurm ...` (a Hydra app whose task runs the
            stand-in; blocking: the plugin returns when every job has ended);
* launcher: `python -m launcher -m seed=0..N-1 impl=torchvision impl.command=<stand-in> backend=slurm`, wait=true
            (it follows the rows and prints the table), and wait=false (the shell is back once submitted);
* big:      `--big` rows (default 200) with wait=false: the time until the shell is back, and how many job arrays
            they went out as (sacct); then they are cancelled (python -m launcher.cancel).

Profile (where a blocking launch spends its time), read from the files each run leaves: command start ->
every row submitted (manifest `submitted_at`) -> the nodes started (status.json `started_at`) -> the first and last
log records (the row's own work) -> the last result.json written -> the command's exit (follow, gather, table).
Slurm: SLURM_CONF from the environment or this checkout's .ci/state (.ci/services/slurm.sh start).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from makespan import STANDIN, env, slurm_env  # noqa: E402

APP = '''\
"""STAND-IN Hydra app for bench/vs_plugin.py: each job runs the stand-in row (sleeps, prints log records)."""
import subprocess, sys
import hydra
from hydra.core.config_store import ConfigStore
from dataclasses import dataclass

@dataclass
class Cfg:
    seed: int = 0
    iters: int = 40
    dt: float = 0.5
    script: str = ""

ConfigStore.instance().store(name="cfg", node=Cfg)

@hydra.main(version_base=None, config_name="cfg")
def main(cfg: Cfg) -> None:
    subprocess.run([sys.executable, cfg.script, str(cfg.iters), str(cfg.dt)], check=True)

if __name__ == "__main__":
    main()
'''


def iso(t: str | None) -> float | None:
    try:
        return datetime.fromisoformat(str(t).replace("Z", "+00:00")).timestamp()
    except (TypeError, ValueError):
        return None


def stamps(directory: Path) -> list[list[float]]:
    out = []
    for log in directory.rglob("*"):
        if log.is_file() and (log.name == "train.log" or log.name.endswith("_log.out")):
            ts = [
                float(ln.split(" t=")[1].split()[0])
                for ln in log.read_text(errors="replace").splitlines()
                if ln.startswith("tvbench iter=")
            ]
            if ts:
                out.append(ts)
    return out


def profile(directory: Path, t0: float, t_exit: float) -> dict[str, float]:
    """Phases of one blocking launch, seconds from the command's start."""
    subs, starts, ends = [], [], []
    for m in directory.rglob("manifest.jsonl"):
        for line in m.read_text().splitlines():
            t = iso(json.loads(line).get("submitted_at"))
            if t:
                subs.append(t)
    for s in directory.rglob("status.json"):
        t = iso(json.loads(s.read_text()).get("started_at"))
        if t:
            starts.append(t)
    for r in directory.rglob("result.json"):
        if r.parent.name != "nodes":
            t = iso(json.loads(r.read_text()).get("finished_at"))
            if t:
                ends.append(t)
    st = stamps(directory)
    out = {"exit": t_exit - t0}
    if subs:
        out["submitted (last row)"] = max(subs) - t0
    if starts:
        out["node started (first, last)"] = (min(starts) - t0, max(starts) - t0)  # type: ignore[assignment]
    if st:
        out["first record (first, last row)"] = (min(s[0] for s in st) - t0, max(s[0] for s in st) - t0)  # type: ignore[assignment]
        out["last record (last row)"] = max(s[-1] for s in st) - t0
    if ends:
        out["last result written"] = max(ends) - t0
    return out


def show(name: str, prof: dict) -> None:
    parts = []
    for k, v in prof.items():
        parts.append(f"{k} {v[0]:.2f}/{v[1]:.2f}" if isinstance(v, tuple) else f"{k} {v:.2f}")
    print(f"    {name}: " + "; ".join(parts))


def run(cmd: list[str], cwd: Path, benv: dict, timeout: float) -> tuple[float, float, subprocess.CompletedProcess]:
    t0 = time.time()
    p = subprocess.run(cmd, cwd=cwd, env=env(benv), capture_output=True, text=True, timeout=timeout)
    return t0, time.time(), p


def plugin_cmd(app: Path, script: Path, seeds: str, iters: int, dt: float, sweep: Path) -> list[str]:
    return [
        sys.executable,
        str(app),
        "-m",
        seeds,
        f"iters={iters}",
        f"dt={dt}",
        f"script={script}",
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.tasks_per_node=1",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=1",
        "hydra.launcher.timeout_min=10",
        "+hydra.launcher.gres=gpu:1",
        "hydra.launcher.partition=ci",
        f"hydra.sweep.dir={sweep}",
    ]


def launcher_cmd(script: Path, seeds: str, iters: int, dt: float, sweep: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "launcher",
        "-m",
        seeds,
        "impl=torchvision",
        "hardware=local",
        "hardware.gpus=1",
        "hardware.cpus=1",
        "hardware.mem_gb=1",
        "hardware.time_limit_min=10",
        "scale=full",
        "impl.framework=stand-in",
        "window.start=1",
        f"window.end={iters}",
        f"impl.command={sys.executable} {script} {iters} {dt}",
        "backend=slurm",
        "backend.exclusive=false",
        "backend.mem=hardware",
        f"hydra.sweep.dir={sweep}",
        *extra,
    ]


def arrays_of(benv: dict, sweep: Path) -> int:
    ids = set()
    for m in sweep.rglob("manifest.jsonl"):
        for line in m.read_text().splitlines():
            ids.add(str(json.loads(line)["job_id"]).split("_")[0])
    return len(ids)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--dt", type=float, default=0.5)
    ap.add_argument("--big", type=int, default=200, help="rows submitted with wait=false, then cancelled (0: skip)")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each blocking measurement (default 2)")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args(argv)
    benv, why = slurm_env()
    if benv is None:
        print(f"SKIP: {why}")
        return 0
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        print("SKIP: hydra-submitit-launcher is not installed: pip install -e '.[bench]'")
        return 0
    row_s = args.iters * args.dt
    print(
        f"vs_plugin: stand-in rows of {args.iters} records {args.dt} s apart ({row_s:.0f} s), 1 GPU each, on "
        f"{benv.get('SLURM_CONF', 'the default Slurm')}; wall time start -> exit"
    )
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_vs_plugin_", dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        script, app = tmp / "standin_row.py", tmp / "app.py"
        script.write_text(STANDIN)
        app.write_text(APP)
        for k in range(args.repeat):
            for n in (1, args.rows):
                seeds = "seed=" + ",".join(str(i) for i in range(n))
                for side in ("plugin", "launcher"):
                    sweep = tmp / f"{side}-{n}-{k}"
                    cmd = (
                        plugin_cmd(app, script, seeds, args.iters, args.dt, sweep)
                        if side == "plugin"
                        else launcher_cmd(script, seeds, args.iters, args.dt, sweep)
                    )
                    t0, t1, p = run(cmd, tmp, benv, args.timeout)
                    ok = p.returncode == 0
                    figures.setdefault(f"{side} {n} row(s), blocking", []).append(t1 - t0)
                    print(
                        f"  {side:<8} {n:>3} row(s), blocking: {t1 - t0:6.2f} s{'' if ok else '  NOT OK: ' + (p.stderr or p.stdout)[-300:]}"
                    )
                    show("profile", profile(sweep, t0, t1))
            sweep = tmp / f"nowait-{k}"
            seeds = "seed=" + ",".join(str(i) for i in range(args.rows))
            t0, t1, p = run(
                launcher_cmd(script, seeds, args.iters, args.dt, sweep, "wait=false"), tmp, benv, args.timeout
            )
            figures.setdefault(f"launcher {args.rows} rows, wait=false (shell back)", []).append(t1 - t0)
            print(f"  launcher {args.rows:>3} rows, wait=false: shell back after {t1 - t0:.2f} s")
            deadline = time.time() + args.timeout
            while len(list(sweep.rglob("result.json"))) < args.rows and time.time() < deadline:
                time.sleep(1)
        if args.big:
            sweep = tmp / "big"
            seeds = "seed=" + ",".join(str(i) for i in range(args.big))
            t0, t1, p = run(launcher_cmd(script, seeds, 2, 0.1, sweep, "wait=false"), tmp, benv, args.timeout)
            arrays = arrays_of(benv, sweep)
            figures.setdefault(f"launcher {args.big} rows, wait=false (shell back)", []).append(t1 - t0)
            print(
                f"  launcher {args.big} rows, wait=false: shell back after {t1 - t0:.2f} s, as {arrays} job array(s)"
                f"{'' if p.returncode == 0 else '  NOT OK: ' + (p.stderr or p.stdout)[-300:]}"
            )
            subprocess.run(
                [sys.executable, "-m", "launcher.cancel", str(sweep)], env=env(benv), capture_output=True, timeout=300
            )
    print("summary (median of runs):")
    for k, v in figures.items():
        print(f"  {k:<48} {statistics.median(v):7.2f} s  ({', '.join(f'{x:.2f}' for x in v)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
