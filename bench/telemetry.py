"""What does the node's telemetry cost the run it measures? (torchvision row, with vs without sampling)

    python bench/telemetry.py [--pairs 3] [--iters 10] [--start 2] [--period-ms 500] [--sampler-s 10]

1. Side by side: the torchvision row (jobs/torchvision/train.py, a real Mask R-CNN training at a CPU size)
   through `python -m launcher`, alternately with LAUNCHER_TELEMETRY=0 and with sampling every --period-ms,
   in --pairs pairs, the order swapped every pair (ABBA). The figure is each run's own result.json
   throughput (the launcher's parser over the same window).
   This machine has no GPU: the GPU sampler runs jobs/standin/bin/nvidia-smi, a STAND-IN that prints the
   real tool's CSV (first on PATH in both modes, so provenance sees the same tool). It is a Python script, so
   its cost here stands for the real tool's order of magnitude, not its exact figure; the host sampler
   (/proc/stat and the command's RSS, a thread in the node) is the real one.
2. The sampler's own CPU time: a Sampler runs for --sampler-s seconds beside nothing; the CPU seconds its
   child (nvidia-smi, from getrusage of waited-for children) and its host thread (thread_time) used, per
   second of sampling, as a share of one core.

Targets: throughput with telemetry no more than 1% below without; the sampler uses under 1% of one core at the
default period. Verdicts as bench/overhead.py: PASS when every pair meets the target, FAIL when every pair
misses it (slower by more than 1%), NOISY when they fall on both sides (a shared 2-core VM's run-to-run noise is
often far above 1%).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from launcher.node import telemetry  # noqa: E402

STANDIN_BIN = ROOT / "jobs" / "standin" / "bin"


def run_row(args, work: Path, sampling: bool) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PATH"] = f"{STANDIN_BIN}{os.pathsep}{env['PATH']}"
    env["LAUNCHER_TELEMETRY"] = "1" if sampling else "0"
    env["LAUNCHER_TELEMETRY_PERIOD_MS"] = str(args.period_ms)
    env["CUDA_VISIBLE_DEVICES"] = ""  # the row runs on the CPU: the stand-in's GPUs are for the sampler only
    run_dir = work / f"{len(list(work.iterdir())):02d}_{'on' if sampling else 'off'}"
    cmd = [
        sys.executable,
        "-m",
        "launcher",
        "impl=torchvision",
        "scale=smoke",
        f"window.start={args.start}",
        f"window.end={args.iters}",
        "impl.options.min_size=192",
        "impl.options.max_size=320",
        "impl.options.images_per_gpu=1",
        f"hydra.run.dir={run_dir}",
    ]
    p = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    res = json.loads((run_dir / "result.json").read_text()) if (run_dir / "result.json").is_file() else {}
    if res.get("status") != "ok":
        raise SystemExit(f"the row did not run ({res.get('status')}): {res.get('error') or p.stderr[-2000:]}")
    return res


def verdict(diffs: list[float], target: float = 0.01) -> str:
    """Sampling can only cost time: a pair misses the target when the run with telemetry is slower by more than
    it. PASS when no pair misses, FAIL when every pair does, NOISY when they disagree (the machine's noise)."""
    misses = [d < -target for d in diffs]
    return "PASS" if not any(misses) else "FAIL" if all(misses) else "NOISY"


def side_by_side(args) -> str:
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as tmp:
        work = Path(tmp)
        rows = []
        for i in range(args.pairs):
            order = (False, True) if i % 2 == 0 else (True, False)
            got = {s: run_row(args, work, s) for s in order}
            off, on = got[False]["throughput"], got[True]["throughput"]
            t = got[True]["telemetry"]
            rows.append((off, on, on / off - 1, t.get("host", {}).get("samples"), t.get("gpu_sampled")))
            print(
                f"pair {i + 1}: without {off:.4f} img/s, with {on:.4f} img/s ({100 * (on / off - 1):+.2f}%); "
                f"{t.get('gpus', [{}])[0].get('samples', 0) if t.get('gpus') else 0} GPU samples (stand-in) and "
                f"{t.get('host', {}).get('samples')} host samples in the window",
                flush=True,
            )
    offs, ons, diffs = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    spread = statistics.stdev(offs) / statistics.mean(offs) if len(offs) > 1 else float("nan")
    print(f"\nwithout telemetry: {statistics.mean(offs):.4f} img/s (run-to-run spread {100 * spread:.1f}%)")
    print(f"with telemetry every {args.period_ms} ms: {statistics.mean(ons):.4f} img/s")
    print(
        f"difference per pair: {', '.join(f'{100 * d:+.2f}%' for d in diffs)}; mean {100 * statistics.mean(diffs):+.2f}%"
    )
    v = verdict(diffs)
    print(
        f"{v}: throughput with telemetry no more than 1% below without (mean {100 * statistics.mean(diffs):+.2f}%, "
        f"{len(diffs)} pairs; run-to-run spread {100 * spread:.1f}%; stand-in nvidia-smi, CPU)"
    )
    return v


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def standin_startup() -> float:
    """CPU seconds of one stand-in call that takes a single sample: its Python start-up, paid once per run."""
    before = _children_cpu()
    subprocess.run(
        [
            str(STANDIN_BIN / "nvidia-smi"),
            f"--query-gpu={','.join(telemetry.GPU_QUERY)}",
            "--format=csv,noheader,nounits",
        ],
        capture_output=True,
        check=True,
    )
    return _children_cpu() - before


def sampler_cost(args, period_ms: int, startup: float) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory(prefix="bench-sampler-") as tmp:
        s = telemetry.Sampler(tmp, period=period_ms, nvidia_smi=str(STANDIN_BIN / "nvidia-smi"))
        cpu_thread: list[float] = []
        loop = s._host_loop

        def timed_loop() -> None:
            loop()
            cpu_thread.append(time.thread_time())

        s._host_loop = timed_loop  # the same loop, its thread's CPU time read at its end
        s.watch(os.getpgrp())
        t0 = time.monotonic()
        s.start()
        time.sleep(args.sampler_s)
        s.stop()
        wall = time.monotonic() - t0
        samples = len(s.gpu_samples())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    steady = max(0.0, child - startup)  # its per-sample work, without the Python start-up paid once
    host = cpu_thread[0] if cpu_thread else float("nan")
    print(
        f"sampler every {period_ms} ms for {wall:.1f} s: {samples} GPU sample lines; nvidia-smi (stand-in) "
        f"{1000 * child:.0f} ms CPU in all, {1000 * steady / wall:.2f} ms per s after its start-up "
        f"({100 * steady / wall:.2f}% of a core); host thread {1000 * host / wall:.2f} ms CPU per s "
        f"({100 * host / wall:.2f}%)"
    )
    return steady / wall, host / wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10, help="window end (completed iterations)")
    ap.add_argument("--start", type=int, default=2, help="window start")
    ap.add_argument("--period-ms", type=int, default=telemetry.DEFAULT_PERIOD_MS)
    ap.add_argument("--sampler-s", type=float, default=10.0)
    ap.add_argument("--skip-row", action="store_true", help="only the sampler's own cost")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, no GPU: nvidia-smi is the stand-in {STANDIN_BIN / 'nvidia-smi'}\n")
    print("== the sampler's own CPU time")
    startup = standin_startup()
    print(f"the stand-in's start-up (Python, once per run): {1000 * startup:.0f} ms CPU")
    results = {p: sampler_cost(args, p, startup) for p in sorted({args.period_ms, 100})}
    child, host = results[args.period_ms]
    v1 = "PASS" if child + host < 0.01 else "FAIL"
    print(
        f"{v1}: sampling every {args.period_ms} ms uses under 1% of one core ({100 * (child + host):.2f}%: "
        f"stand-in nvidia-smi {100 * child:.2f}% after its start-up, host thread {100 * host:.2f}%)"
    )
    v2 = "SKIP"
    if args.skip_row:
        print("SKIP: the row with and without telemetry (--skip-row)")
    else:
        print("\n== the torchvision row, without and with telemetry (ABBA pairs)")
        v2 = side_by_side(args)
    return 1 if "FAIL" in (v1, v2) else 0


if __name__ == "__main__":
    sys.exit(main())
