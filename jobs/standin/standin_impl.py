"""STAND-IN implementation (not a real training): writes a log in one implementation's real format.

    python -m launcher.jobs.standin.standin_impl --format detectron2 --iters 520 --base 0.25 \
        --warmup-iters 50 --warmup-factor 4 --noise 0.1 --stall-every 97 --stall 2 [--fast] [--truth FILE]

Used as the command of stand-in rows (Slurm/Ray tests, benchmarks of the pipeline) because the real
2019/2020 frameworks and 8 V100s cannot run here.  Lines go where the real implementation puts them
(stdout/stderr, or the file its row config names, relative to the current directory), following the
implementation's own smoothing and rounding (see formats.py).  Without --fast it sleeps through each
iteration, so live displays see a log that grows in real time.  At the end it reports the TRUE
throughput it simulated over --window on stderr (one ``standin-truth: {json}`` line) and, with
--truth, writes it with the per-iteration times to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from launcher.jobs.standin.formats import FORMATS, FileSink, TimeModel, simulate


def _placer(fmt: str, log_path: str | None, cwd: Path):
    """With --log-path: the format's log file goes there (its other files stay relative to --cwd)."""
    if not log_path:
        return None
    import fnmatch

    def place(stream: str) -> Path:
        if fnmatch.fnmatch(stream, FORMATS[fmt].log):
            target = Path(log_path)
            return target.with_name(Path(stream).name) if "*" in target.name else target
        return cwd / stream

    return place


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="standin_impl", description=__doc__.split("\n\n")[0])
    ap.add_argument("--format", required=True, choices=sorted(FORMATS), help="whose log format to write")
    ap.add_argument("--iters", type=int, default=520, help="iterations to run (whole epochs for epoch-based formats)")
    ap.add_argument(
        "--images-per-iter", type=int, help="images per iteration (default: the seed row's, 16; tensorpack 8)"
    )
    ap.add_argument("--base", type=float, default=0.25, help="warm step time, seconds")
    ap.add_argument("--warmup-iters", type=int, default=0)
    ap.add_argument("--warmup-factor", type=float, default=1.0, help="first iteration is base x this, decaying to base")
    ap.add_argument("--noise", type=float, default=0.0, help="relative standard deviation of step times")
    ap.add_argument("--stall-every", type=int, default=0)
    ap.add_argument("--stall", type=float, default=0.0, help="extra seconds every --stall-every iterations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--variant",
        help="format variant (detectron2: v0.1|v0.1.2|v0.3; mmdetection: mmcv0.5|mmcv0.6; "
        "simpledet: 9187a1|later; detectron: quoted|unquoted)",
    )
    ap.add_argument(
        "--tty", action="store_true", help="matterport: draw the Keras bar with \\b and \\r as on a terminal"
    )
    ap.add_argument(
        "--start-iter",
        type=int,
        default=0,
        help="resume after this iteration, as from a checkpoint (detectron2, maskrcnn_benchmark, detectron)",
    )
    ap.add_argument(
        "--validation-s",
        type=float,
        default=0.0,
        help="matterport: a validation pass of this many seconds inside each epoch's printed time",
    )
    ap.add_argument("--fast", action="store_true", help="simulated clock from now on: write instantly, no sleeping")
    ap.add_argument("--window", nargs=2, type=int, default=[100, 500], metavar=("START", "END"))
    ap.add_argument("--truth", type=Path, help="write the truth (throughput, per-iteration times) to this JSON file")
    ap.add_argument("--cwd", type=Path, default=Path("."), help="directory the log files are relative to")
    ap.add_argument(
        "--log-path",
        help="write the implementation's log file here instead (a row's log.path: where "
        "its own output option points); a `*` takes the file's own name",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    model = TimeModel(
        args.base, args.warmup_iters, args.warmup_factor, args.noise, args.stall_every, args.stall, args.seed
    )
    opts = {}
    if args.variant:
        opts["variant"] = args.variant
    if args.tty:
        opts["tty"] = True
    if args.start_iter:
        opts["start_iter"] = args.start_iter
    if args.validation_s:
        opts["validation_s"] = args.validation_s
    if args.images_per_iter:
        opts["images_per_iter"] = args.images_per_iter
    if args.fast:  # the node refuses a window longer than the command's run unless told the clock is simulated
        from launcher.node.guard import SIMULATED_CLOCK_MARKER

        print(SIMULATED_CLOCK_MARKER, file=sys.stderr, flush=True)
    sink = FileSink(args.cwd, appends=FORMATS[args.format].appends, place=_placer(args.format, args.log_path, args.cwd))
    try:
        # a fast run is stamped from now on, like a real one: the node refuses records stamped before its start
        sim = simulate(
            args.format,
            args.iters,
            model,
            realtime=not args.fast,
            sink=sink,
            start=time.time() if args.fast else None,
            **opts,
        )
    finally:
        sink.close()
    s, e = args.window
    truth = {
        "standin": True,
        "format": args.format,
        "iters": args.iters,
        "images_per_iter": sim.images_per_iter,
        "window": [s, e],
        "log": FORMATS[args.format].log,
        "first_iter": sim.first_iter,
        "throughput": sim.true_throughput((s, e))
        if sim.first_iter <= s and e <= sim.first_iter + len(sim.timed)
        else None,
    }
    print("standin-truth: " + json.dumps(truth), file=sys.stderr, flush=True)
    if args.truth:
        args.truth.write_text(json.dumps({**truth, "timed": sim.timed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
