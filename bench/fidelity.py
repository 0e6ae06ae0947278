"""Does the launcher report the throughput a run really had? (fidelity of every log parser)

    python bench/fidelity.py [--seeds 8] [--iters 520] [--window 100 500] [--formats detectron2 ...]

For every log format the launcher parses (`launcher.parse.formats()`), generates runs whose true
per-iteration times are known -- the STAND-IN writers in jobs/standin/formats.py replay the seed
implementations' own timers, smoothing and printed digits -- and reads them back with the launcher's
parser for that format (`launcher.parse.measure`, what the node calls), over the seed's window 100..500.
The torchvision row has no foreign writer: its log is the launcher's own `tvbench iter= t=` stamp
line (jobs/torchvision/train.py), so this script writes those lines itself, stamps rounded to the
6 decimals train.py prints.

Time models (each with several seeds): `clean` (constant step), `warm+stall` (5x slower first
iterations decaying over 80, 15% noise, a 3 s stall every 37 iterations: what makes naive averages
wrong), `noisy` (30% noise, a 2-step stall every 13 iterations). The warm step time of every row is
the seed page's published figure (images per iteration / img/s), so each log's rounding is weighed
against the epoch or interval lengths the real run had (Keras' whole-second epochs matter only
relative to the epoch's length). Every variant of a format the stand-in knows is run.

Per format it prints: runs, the largest |reported - true| / true (true = the generated throughput
over the window the parser says it used), the largest and smallest reported `error_bound`, and
PASS when (a) the largest error is within the target the log's digits allow -- 0.1% for the
formats with 4+ significant digits per record, 1% for matterport's whole-second Keras epochs -- and
(b) the reported error_bound is never smaller than the actual error, in any run.
Exit status 1 when any format FAILs.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launcher.jobs.standin.formats import FORMATS, TimeModel, default_images_per_iter, simulate  # noqa: E402
from launcher.parse import formats as parser_formats  # noqa: E402
from launcher.parse import measure  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: the target each format's printed digits allow (relative error of the throughput over 400 iterations)
TARGET = {"matterport": 0.01}
DEFAULT_TARGET = 0.001

#: format variants the stand-in writes (each run once per model and seed)
VARIANTS = {
    "detectron2": [{"variant": v} for v in ("v0.1", "v0.1.2", "v0.3")],
    "mmdetection": [{"variant": v} for v in ("mmcv0.5", "mmcv0.6")],
    "simpledet": [{"variant": v} for v in ("9187a1", "later")],
    "detectron": [{"variant": v} for v in ("quoted", "unquoted")],
    "matterport": [{"tty": False}, {"tty": True}],
}

#: torchvision has no published figure; a step time in the same range as the seed rows
TORCHVISION_STEP = 0.3
TORCHVISION_IMAGES = 16


def models(base: float, seed: int) -> dict[str, TimeModel]:
    return {
        "clean": TimeModel(base=base, seed=seed),
        "warm+stall": TimeModel(base=base, warmup_iters=80, warmup_factor=5.0, noise=0.15, stall_every=37,
                                stall=3.0, seed=seed),
        "noisy": TimeModel(base=base, noise=0.30, stall_every=13, stall=2 * base, seed=seed),
    }


def seed_step_time(fmt: str) -> float:
    """Warm step time of the seed row: images per iteration / the published img/s (conf/impl/<fmt>.yaml)."""
    from omegaconf import OmegaConf

    ref = OmegaConf.load(os.path.join(ROOT, "conf", "impl", f"{fmt}.yaml")).get("reference")
    if not ref:
        raise SystemExit(f"conf/impl/{fmt}.yaml has no published reference to derive a step time from")
    return default_images_per_iter(fmt) / float(ref)


def torchvision_log(model: TimeModel, iters: int, images: int) -> tuple[str, list[float]]:
    """The torchvision row's stamp lines for known step times, printed as train.py prints them."""
    times = model.times(iters)
    t0 = 1_700_000_000.0 + random.Random(model.seed).random() * 1e6  # a realistic epoch stamp magnitude
    lines = ["tvbench data=synthetic"]
    for i in range(1, iters + 1):
        # the clock reading after iteration i, exact to the double's resolution (~0.24 us at 1.7e9 s); a
        # running `t += dt` would drift by one rounding per iteration, an error of the generator, not the log
        t = t0 + math.fsum(times[:i])
        lines.append(f"tvbench iter={i} t={t:.6f} images={images} loss={1.0 / i:.4f}")
    return "\n".join(lines) + "\n", times


@dataclass
class Run:
    fmt: str
    model: str
    seed: int
    variant: str
    window: tuple[int, int]
    reported: float
    truth: float
    bound: float

    @property
    def err(self) -> float:
        return abs(self.reported - self.truth) / self.truth


def run_format(fmt: str, seeds: int, iters: int, window: tuple[int, int]) -> list[Run]:
    out = []
    for seed in range(seeds):
        if fmt == "torchvision":
            for name, model in models(TORCHVISION_STEP, seed).items():
                text, times = torchvision_log(model, iters, TORCHVISION_IMAGES)
                m = measure(fmt, text, window, TORCHVISION_IMAGES)
                s, e = m.window
                truth = TORCHVISION_IMAGES * (e - s) / sum(times[s:e])
                out.append(Run(fmt, name, seed, "-", m.window, m.throughput, truth, m.error_bound))
            continue
        for name, model in models(seed_step_time(fmt), seed).items():
            for opts in VARIANTS.get(fmt, [{}]):
                sim = simulate(fmt, iters, model, **opts)
                m = measure(fmt, sim.log_text(), window, sim.images_per_iter)
                truth = sim.true_throughput(m.window)
                variant = ",".join(f"{k}={v}" for k, v in opts.items()) or "-"
                out.append(Run(fmt, name, seed, variant, m.window, m.throughput, truth, m.error_bound))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Figures are computed, not timed: the result does not depend on the machine.")
    ap.add_argument("--seeds", type=int, default=8, help="seeds per time model and variant (default 8)")
    ap.add_argument("--iters", type=int, default=520, help="iterations per generated run (default 520)")
    ap.add_argument("--window", nargs=2, type=int, default=[100, 500], metavar=("START", "END"))
    ap.add_argument("--formats", nargs="+", default=None, help="formats to check (default: every parser's)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every run")
    args = ap.parse_args(argv)
    fmts = args.formats or parser_formats()
    unknown = [f for f in fmts if f not in FORMATS and f != "torchvision"]
    if unknown:
        ap.error(f"no stand-in writer for {unknown}; choose from torchvision, {', '.join(sorted(FORMATS))}")
    window = tuple(args.window)
    t0 = time.perf_counter()
    print(f"fidelity: {args.seeds} seeds x 3 time models x variants per format, {args.iters} iterations, "
          f"window {window[0]}..{window[1]}; truth = generated img/s over the window the parser used")
    head = (f"{'format':<19} {'runs':>4} {'step s':>7} {'max err':>9} {'max bound':>9} {'min bound':>9} "
            f"{'bound/err':>9} {'target':>7}  verdict")
    print(head)
    print("-" * len(head))
    failed = []
    verdicts = []
    for fmt in fmts:
        runs = run_format(fmt, args.seeds, args.iters, window)
        if args.verbose:
            for r in runs:
                print(f"   {r.model:<10} seed={r.seed} {r.variant:<16} window={r.window} reported={r.reported:.6f} "
                      f"true={r.truth:.6f} err={r.err:.2e} bound={r.bound:.2e}")
        target = TARGET.get(fmt, DEFAULT_TARGET)
        max_err = max(r.err for r in runs)
        under = [r for r in runs if r.bound < r.err]
        ratio = min((r.bound / r.err) for r in runs if r.err > 0) if any(r.err > 0 for r in runs) else float("inf")
        ok = max_err <= target and not under
        step = TORCHVISION_STEP if fmt == "torchvision" else seed_step_time(fmt)
        print(f"{fmt:<19} {len(runs):>4} {step:>7.3f} {max_err:>9.2e} {max(r.bound for r in runs):>9.2e} "
              f"{min(r.bound for r in runs):>9.2e} {ratio:>9.2f} {target:>7.1%}  {'PASS' if ok else 'FAIL'}")
        for r in under[:3]:
            print(f"   bound smaller than the error: {r.model} seed={r.seed} {r.variant} err={r.err:.3e} "
                  f"bound={r.bound:.3e}")
        if max(r.bound for r in runs) > target:
            loose = max(runs, key=lambda r: r.bound)
            print(f"   note: a reported bound ({loose.bound:.2e}, {loose.model} seed={loose.seed} {loose.variant}) is "
                  f"looser than the {target:.1%} the digits allow: safe (never below the error) but pessimistic")
        verdicts.append((fmt, ok, max_err, target, len(under)))
        if not ok:
            failed.append(fmt)
    print(f"({time.perf_counter() - t0:.1f} s; 'bound/err' is the smallest reported bound / actual error over "
          "the runs: >= 1 means the bound always held)")
    for fmt, ok, max_err, target, n_under in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}: fidelity {fmt}: max error {max_err:.2e} (target <= {target:.1%}), "
              f"bound below error in {n_under} runs (target 0)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
