"""How long does gathering 10,000 run directories take? (target: under 5 s, gather + history append)

    python bench/gather_scale.py [--runs 10000] [--target 5]

Generates a sweep tree of synthetic run directories in a temporary directory (results written as the
node writes them, with provenance; a share of them failed, pending or running), then times
`gather()` with history, `summary()` and `render()` separately, with tracemalloc's peak Python
memory. The generated figures are generated, not measured: they exist only to be read back.
Prints PASS or FAIL against the target and exits 1 on FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launcher.gather import gather, render, summary  # noqa: E402
from launcher.gather import history  # noqa: E402

IMPLS = (
    "detectron2",
    "mmdetection",
    "maskrcnn_benchmark",
    "tensorpack",
    "simpledet",
    "detectron",
    "matterport",
    "torchvision",
)
REFS = (62, 53, 53, 50, 39, 19, 14, None)


def generate(root: str, n: int, per_sweep: int = 100) -> None:
    rnd = random.Random(0)
    prov = {
        "accelerator_model_name": "Tesla V100-SXM2-32GB",
        "cuda_driver_version": "535.54.03",
        "accelerators_per_node": 8,
        "host_processor_model_name": "Intel Xeon",
        "python_version": "3.7.7",
    }
    for i in range(n):
        sweep = os.path.join(root, f"sweep_{i // per_sweep:04d}")
        k = i % len(IMPLS)
        run = os.path.join(sweep, f"{i % per_sweep}_{IMPLS[k]}")
        os.makedirs(run)
        kind = rnd.random()
        spec = {
            "impl": IMPLS[k],
            "hardware": "v100x8",
            "backend": "slurm",
            "gpus": 8,
            "reference": REFS[k],
            "reference_hardware": "v100x8" if REFS[k] else None,
            "recipe_hash": f"r{k}",
            "scale": "full",
        }
        with open(os.path.join(run, "spec.json"), "w") as f:
            json.dump(spec, f)
        entry = {
            "impl": IMPLS[k],
            "backend": "slurm",
            "job_id": str(i),
            "run_dir": run,
            "submitted_at": "2024-05-01T00:00:00+00:00",
        }
        with open(os.path.join(run, "manifest.jsonl"), "w") as f:
            f.write(json.dumps(entry) + "\n")
        if kind < 0.03:  # pending: spec and manifest only
            continue
        if kind < 0.05:
            with open(os.path.join(run, "status.json"), "w") as f:
                json.dump({"state": "running", "host": "node1"}, f)
            continue
        ok = kind >= 0.10
        res = dict(
            spec,
            status="ok" if ok else "failed",
            throughput=(REFS[k] or 5) * rnd.uniform(0.97, 1.03) if ok else None,
            error=None if ok else "RuntimeError: CUDA out of memory",
            error_bound=0.001,
            tolerance=0.05,
            started_at=f"2024-05-01T00:00:{i % 60:02d}+00:00",
            finished_at=f"2024-{1 + i % 12:02d}-01T01:{(i // 60) % 60:02d}:{i % 60:02d}+00:00",
            job_id=str(i),
            run_dir=run,
            commit="0123456789abcdef" * 2 + "01234567",
            provenance=prov,
            schema=1,
        )
        with open(os.path.join(run, "result.json"), "w") as f:
            json.dump(res, f, indent=2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--target", type=float, default=5.0, help="seconds for gather + history (default 5)")
    ap.add_argument(
        "--log-mib",
        type=int,
        default=64,
        help="size of the (sparse) train.log given to every run for the memory check (default 64 MiB)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gather_scale_") as tmp:
        root = os.path.join(tmp, "outputs")
        t0 = time.perf_counter()
        generate(root, args.runs)
        print(f"generated {args.runs} run dirs in {time.perf_counter() - t0:.1f} s")
        db = os.path.join(tmp, "history.sqlite")
        t0 = time.perf_counter()
        runs, problems = gather([root], db=db, job_state=False)
        t_gather = time.perf_counter() - t0
        t0 = time.perf_counter()
        table = summary(runs)
        text = render(runs, "rst", table=table)
        t_table = time.perf_counter() - t0
        t0 = time.perf_counter()
        gather([root], db=db, job_state=False)  # again: history must add nothing
        t_again = time.perf_counter() - t0
        t0 = time.perf_counter()
        trend = history.trend(history.load(db))
        t_hist = time.perf_counter() - t0
        stored = len(history.load(db, status=None))
        # memory in a separate, untimed pass: tracemalloc slows Python down several times
        tracemalloc.start()
        again, _ = gather([root], db=db, job_state=False)
        render(again, "rst")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # memory must grow with the number of runs, not with the size of their logs: give every run a
        # train.log of --log-mib (sparse: no disk is used, but a reader would pay for every byte)
        for dirpath, _, files in os.walk(root):
            if "spec.json" in files:
                with open(os.path.join(dirpath, "train.log"), "wb") as f:
                    f.truncate(args.log_mib * 2**20)
        t0 = time.perf_counter()
        tracemalloc.start()
        with_logs, _ = gather([root], db=db, job_state=False)
        render(with_logs, "rst")
        _, peak_logs = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        t_logs = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = t_gather + t_table + t_hist  # gather with history append, the table, the history trend
    print(f"gather + history append: {t_gather:.2f} s for {len(runs)} runs ({len(problems)} problems)")
    print(f"summary + render (rst):  {t_table:.2f} s, {len(table)} table rows, {len(text)} characters")
    print(f"gather again (idempotent history, {stored} stored): {t_again:.2f} s")
    print(f"history load + trend:    {t_hist:.2f} s, {len(trend)} rows")
    print(
        f"peak Python memory of gather + render (tracemalloc): {peak / 2**20:.0f} MiB; process peak RSS {rss:.0f} MiB"
    )
    print(
        f"with a {args.log_mib} MiB train.log in every run ({args.runs * args.log_mib / 1024:.0f} GiB of logs): "
        f"peak Python memory {peak_logs / 2**20:.0f} MiB, {t_logs:.2f} s (traced)"
    )
    ok = len(runs) == args.runs and total < args.target and stored == int(runs["source"].eq("result").sum())
    print(f"{'PASS' if ok else 'FAIL'}: {total:.2f} s (target {args.target:.1f} s) for {args.runs} run dirs")
    mem_ok = peak_logs <= 1.1 * peak + 5 * 2**20
    print(
        f"{'PASS' if mem_ok else 'FAIL'}: gather memory independent of log size: {peak_logs / 2**20:.0f} MiB with "
        f"{args.log_mib} MiB logs vs {peak / 2**20:.0f} MiB without (target: within 10% + 5 MiB)"
    )
    return 0 if ok and mem_ok else 1


if __name__ == "__main__":
    sys.exit(main())
