"""Does a sweep of N rows take as long as its longest row? (real Slurm and Ray, vs rows one after the other)

    python bench/makespan.py [--rows 8] [--iters 30] [--dt 0.5] [--backends slurm ray local]

Every figure is the wall time of a `python -m launcher ...` command, as a user types it, from the
moment it is started to its exit (with wait=true the exit comes after the gathered table is printed).
The rows are STAND-INS: impl=torchvision planned for 1 GPU each (hardware.gpus=1, 1 CPU, 1 GB), with
impl.command replaced by a script that sleeps `--dt` seconds per iteration and prints the torchvision
row's `tvbench iter= t=` line after each (so the node parses a real log into a real result), and
impl.framework=stand-in (the rows train nothing, so the node's provenance does not import torch).
Rows differ by seed=0..N-1 (a Hydra sweep: `-m seed=0,1,...`).

Per backend (Slurm: `sinfo` must answer, SLURM_CONF from the environment or this checkout's
.ci/state; Ray: the Jobs API at $LAUNCHER_RAY_ADDRESS, default http://127.0.0.1:8265; a backend
that is not running is SKIPped with the reason):

* single:  one row alone, `python -m launcher <row> backend=B` (the longest single job: every row is
           the same length);
* sweep:   `python -m launcher -m seed=0..N-1 <row> backend=B`; makespan ratio = sweep / single,
           target <= 1.15 (resources for all rows at once: the CI node declares 8 GPUs);
* wait=false: the same sweep with wait=false: time until the shell is back (target < 5 s for 8
           rows); the same for one row, and the submission time per row = (N rows - 1 row) / (N - 1),
           what each additional row costs (target < 0.5 s); the script then waits for those rows to
           end before the next measurement, so no two measurements overlap;
* local:   the sequential reference: backend=local (Hydra's basic launcher runs the rows one after
           the other, as it does): its ratio to a single local row should be about N.

Also printed per sweep: the spread of the rows' first-iteration stamps (how far apart they really
started) and each row's status. A row that does not end `ok` FAILs the sweep.
Exit status 1 on FAIL (a SKIP is not a failure).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STANDIN = '''\
"""STAND-IN row for bench/makespan.py: trains nothing; sleeps DT s per iteration and prints the
torchvision row's log line after each, with the wall-clock stamp the parser reads."""
import sys, time
n, dt = int(sys.argv[1]), float(sys.argv[2])
for i in range(1, n + 1):
    time.sleep(dt)
    print(f"tvbench iter={i} t={time.time():.6f} images=2 loss=1.0", flush=True)
'''


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(extra or {})
    return e


# ------------------------------------------------------------------ is the backend there?


def slurm_env() -> tuple[dict[str, str] | None, str]:
    """(environment with SLURM_CONF, '') when `sinfo` answers, else (None, why)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return None, "Slurm client commands are not installed (start the CI cluster: .ci/services/slurm.sh start)"
    extra = {}
    conf = os.environ.get("SLURM_CONF")
    if not conf:
        state = Path(os.environ.get("LAUNCHER_CI_STATE", ROOT / ".ci" / "state")) / "slurm" / "etc" / "slurm.conf"
        if state.exists():
            conf = str(state)
    if conf:
        extra["SLURM_CONF"] = conf
    try:
        p = subprocess.run(["sinfo", "-h", "-o", "%T %G"], capture_output=True, text=True, timeout=10, env=env(extra))
    except subprocess.TimeoutExpired:
        return None, "the Slurm controller does not answer (sinfo timed out)"
    if p.returncode != 0 or not any(s in p.stdout for s in ("idle", "mixed", "allocated")):
        why = (p.stderr or p.stdout).strip().splitlines()
        return None, (
            f"Slurm is not running ({why[-1][:160] if why else 'no node'}); start it with "
            ".ci/services/slurm.sh start or set SLURM_CONF"
        )
    return extra, ""


def slurm_busy(extra: dict[str, str]) -> int:
    p = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=env(extra), timeout=10)
    return len(p.stdout.split()) if p.returncode == 0 else -1


def ray_address() -> str:
    return os.environ.get("LAUNCHER_RAY_ADDRESS", "http://127.0.0.1:8265").rstrip("/")


def ray_answers(address: str) -> str:
    try:
        with urllib.request.urlopen(f"{address}/api/version", timeout=5) as r:
            json.load(r)
        return ""
    except Exception as e:  # noqa: BLE001  (any failure means: not there)
        return (
            f"no Ray Jobs API answers at {address} ({type(e).__name__}); start one with "
            ".ci/services/ray.sh start or set LAUNCHER_RAY_ADDRESS"
        )


def ray_busy(address: str) -> int:
    try:
        with urllib.request.urlopen(f"{address}/api/jobs/", timeout=5) as r:
            jobs = json.load(r)
        return sum(1 for j in jobs if j.get("status") in ("PENDING", "RUNNING"))
    except Exception:  # noqa: BLE001
        return -1


# ------------------------------------------------------------------ one command, timed


def launcher_args(args, script: Path, backend: str, extra: list[str]) -> list[str]:
    row = [
        "impl=torchvision",
        "hardware=local",
        "hardware.gpus=1",
        "hardware.cpus=1",
        "hardware.mem_gb=1",
        "hardware.time_limit_min=10",
        "scale=full",
        "impl.framework=stand-in",
        "window.start=1",
        f"window.end={args.iters}",
        f"impl.command={sys.executable} {script} {args.iters} {args.dt}",
        f"backend={backend}",
    ]
    if backend == "ray":
        row.append(f"backend.address={ray_address()}")
    if "-m" in extra:  # Hydra's flag goes before the overrides (argparse ends the positionals at a flag)
        extra = [a for a in extra if a != "-m"]
        return ["-m", *row, *extra]
    return row + extra


def timed_launcher(
    argv: list[str], cwd: Path, benv: dict[str, str], timeout: float
) -> tuple[float, subprocess.CompletedProcess]:
    cmd = [sys.executable, "-m", "launcher", *argv]
    t0 = time.perf_counter()
    timed_launcher.started = time.time()  # wall clock of the start, for the rows' stamps
    p = subprocess.run(cmd, cwd=cwd, env=env(benv), capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t0, p


def results(directory: Path) -> list[dict]:
    out = []
    for f in sorted(directory.rglob("result.json")):
        out.append(json.loads(f.read_text()))
    return out


def first_stamps(directory: Path) -> list[float]:
    stamps = []
    for log in directory.rglob("train.log"):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("tvbench iter=1 "):
                stamps.append(float(line.split(" t=")[1].split()[0]))
                break
    return stamps


def timeline(directory: Path, t0: float) -> str:
    """When, from the command's start, the rows' first and last iterations were stamped."""
    first, last = [], []
    for log in directory.rglob("train.log"):
        stamps = [
            float(line.split(" t=")[1].split()[0])
            for line in log.read_text(errors="replace").splitlines()
            if line.startswith("tvbench iter=")
        ]
        if stamps:
            first.append(stamps[0] - t0)
            last.append(stamps[-1] - t0)
    if not first:
        return "no stamps"
    return (
        f"iteration 1 stamped at {min(first):.2f}..{max(first):.2f} s, last iteration at "
        f"{min(last):.2f}..{max(last):.2f} s after the command started"
    )


def wait_results(directory: Path, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(list(directory.rglob("result.json"))) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"rows submitted with wait=false did not all end within {timeout:.0f} s ({directory})")
        time.sleep(0.5)


def check_ok(what: str, proc: subprocess.CompletedProcess, directory: Path, n: int) -> list[str]:
    res = results(directory)
    bad = [
        f"{r.get('impl')}@{r.get('run_dir', '?').rsplit('/', 1)[-1]}: {r.get('status')} {r.get('error') or ''}"[:200]
        for r in res
        if r.get("status") != "ok"
    ]
    if len(res) != n:
        bad.append(f"{len(res)} results for {n} rows")
    if proc.returncode != 0:
        bad.append(f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-400:]}")
    if bad:
        print(f"  {what}: not ok: " + "; ".join(bad))
    return bad


# ------------------------------------------------------------------ one backend


def bench_backend(args, backend: str, benv: dict[str, str], tmp: Path, script: Path) -> list[tuple[str, bool, str]]:
    n = args.rows
    seeds = "seed=" + ",".join(str(i) for i in range(n))
    row_len = args.iters * args.dt
    verdicts: list[tuple[str, bool, str]] = []
    base = tmp / backend
    base.mkdir()

    single_dir = base / "single"
    t1, p = timed_launcher(
        launcher_args(args, script, backend, ["seed=0", f"hydra.run.dir={single_dir}"]), base, benv, args.timeout
    )
    bad = check_ok("single", p, single_dir, 1)
    print(
        f"  single row        : {t1:6.2f} s from the command to the table (the row itself sleeps {row_len:.1f} s); "
        + timeline(single_dir, timed_launcher.started)
    )

    sweep_dir = base / "sweep"
    tn, p = timed_launcher(
        launcher_args(args, script, backend, ["-m", seeds, f"hydra.sweep.dir={sweep_dir}"]),
        base,
        benv,
        args.timeout + row_len * (n if backend == "local" else 1),
    )
    bad += check_ok("sweep", p, sweep_dir, n)
    stamps = first_stamps(sweep_dir)
    skew = max(stamps) - min(stamps) if stamps else float("nan")
    ratio = tn / t1
    print(f"  sweep of {n} rows   : {tn:6.2f} s; / single = {ratio:.3f}; rows' first iterations {skew:.2f} s apart")
    print(f"                      {timeline(sweep_dir, timed_launcher.started)}")
    if backend == "local":
        verdicts.append(
            (
                f"makespan local (sequential reference): {n} rows / 1 row = {ratio:.2f} (about {n} expected)",
                not bad and ratio > 0.8 * n,
                "",
            )
        )
        return verdicts
    excess = tn - t1
    need = excess / (args.target - 1) if excess > 0 else 0.0
    print(
        f"                      the sweep costs {excess:.2f} s more than one row: the ratio meets {args.target:.2f} "
        f"for rows whose single run takes >= {need:.0f} s"
    )
    verdicts.append(
        (
            f"makespan {backend}: sweep of {n} / single row = {ratio:.3f} with {row_len:.0f}-s rows "
            f"(+{excess:.1f} s; <= {args.target:.2f} from ~{need:.0f}-s runs; target <= {args.target:.2f})",
            not bad and ratio <= args.target,
            "",
        )
    )

    one_dir = base / "nowait-one"
    tw1, p1 = timed_launcher(
        launcher_args(args, script, backend, ["seed=0", "wait=false", f"hydra.run.dir={one_dir}"]),
        base,
        benv,
        args.timeout,
    )
    nowait_dir = base / "nowait"
    tw, p = timed_launcher(
        launcher_args(args, script, backend, ["-m", seeds, "wait=false", f"hydra.sweep.dir={nowait_dir}"]),
        base,
        benv,
        args.timeout,
    )
    nowait_bad = [f"exit {q.returncode}: {(q.stderr or q.stdout).strip()[-400:]}" for q in (p1, p) if q.returncode]
    t_sub = (tw - tw1) / (n - 1) if n > 1 else tw
    print(
        f"  wait=false        : shell back after {tw:.2f} s for {n} rows, {tw1:.2f} s for 1 row: "
        f"{t_sub:.3f} s per additional row"
    )
    if nowait_bad:
        print(f"  wait=false not ok: {nowait_bad}")
    else:
        wait_results(one_dir, 1, args.timeout + row_len)
        wait_results(nowait_dir, n, args.timeout + row_len)
        nowait_bad = [r.get("status") for d in (one_dir, nowait_dir) for r in results(d) if r.get("status") != "ok"]
        if nowait_bad:
            print(f"  wait=false rows not ok: {nowait_bad}")
    verdicts.append(
        (
            f"submit {backend}: {t_sub:.3f} s per row ((wait=false {n} rows - 1 row) / {n - 1}; "
            f"target < {args.submit_target:g} s)",
            not nowait_bad and t_sub < args.submit_target,
            "",
        )
    )
    verdicts.append(
        (
            f"shell back {backend}: wait=false returns in {tw:.2f} s for {n} rows (target < {args.shell_target:g} s)",
            not nowait_bad and tw < args.shell_target,
            "",
        )
    )
    return verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=8, help="rows in the sweep, 1 GPU each (default 8)")
    ap.add_argument("--iters", type=int, default=30, help="iterations per stand-in row (default 30)")
    ap.add_argument("--dt", type=float, default=0.5, help="seconds per stand-in iteration (default 0.5)")
    ap.add_argument("--backends", nargs="+", default=["slurm", "ray", "local"], choices=["slurm", "ray", "local"])
    ap.add_argument("--target", type=float, default=1.15, help="makespan / longest single row (default 1.15)")
    ap.add_argument("--submit-target", type=float, default=0.5, help="seconds per row (default 0.5)")
    ap.add_argument("--shell-target", type=float, default=5.0, help="seconds until wait=false returns (default 5)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per command before giving up (default 300)")
    args = ap.parse_args(argv)
    t_all = time.perf_counter()
    print(
        f"makespan: {args.rows} stand-in rows of {args.iters} x {args.dt} s = {args.iters * args.dt:.1f} s each, "
        f"1 GPU each; wall time of `python -m launcher ...` from start to exit"
    )
    verdicts: list[tuple[str, bool | None, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench_makespan_") as tmp:
        tmp = Path(tmp)
        script = tmp / "standin_row.py"
        script.write_text(STANDIN)
        for backend in args.backends:
            if backend == "slurm":
                benv, why = slurm_env()
                if benv is None:
                    verdicts.append((f"makespan slurm: {why}", None, why))
                    print(f"slurm: SKIP: {why}")
                    continue
                busy = slurm_busy(benv)
                print(
                    f"slurm ({benv.get('SLURM_CONF', 'default slurm.conf')}; {busy} jobs already queued"
                    f"{': figures include their contention' if busy else ''}):"
                )
            elif backend == "ray":
                why = ray_answers(ray_address())
                if why:
                    verdicts.append((f"makespan ray: {why}", None, why))
                    print(f"ray: SKIP: {why}")
                    continue
                benv = {}
                busy = ray_busy(ray_address())
                print(
                    f"ray ({ray_address()}; {busy} jobs already pending or running"
                    f"{': figures include their contention' if busy else ''}):"
                )
            else:
                benv = {}
                print("local (Hydra's basic launcher, rows one after the other):")
            verdicts += bench_backend(args, backend, benv, tmp, script)
    print(f"({time.perf_counter() - t_all:.0f} s in all)")
    failed = False
    for text, ok, _ in verdicts:
        print(f"{'SKIP' if ok is None else 'PASS' if ok else 'FAIL'}: {text}")
        failed |= ok is False
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
