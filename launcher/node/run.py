"""The node-side entry point, the same for every backend: `python -m launcher.node RUN_DIR`.

provenance snapshot (beside the rest) -> build once per recipe -> execute (job script, train.log) -> parse
-> result.json

Whatever happens (a failing command, a signal from the scheduler, a log that stops short, a bug in a
parser) the run ends with an atomically written result.json whose status says which, so the table
never loses a row.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

from .. import lease, parse
from ..localcancel import cancel_requested
from .guard import clock_refusal, simulated_clock, unreadable_spec_result
from ..rundir import (
    JOB_ID_VAR,
    JOB_SCRIPT,
    PROVENANCE_FILE,
    RESULT_FILE,
    SPEC_FILE,
    STATUS_FILE,
    TRAIN_LOG,
    Result,
    atomic_write_json,
    now_iso,
    release_space,
    reserve_space,
    set_aside,
    write_result,
    write_status,
)
from ..safeio import write_new_text
from ..span import SpanError, leader_setup, main_peer_or_leader, mark_done, watch_in_background
from ..spec import JobSpec
from . import software, telemetry
from .build import build_once
from .compiled import builds_on_submit_host, built_problems
from .environment import command_environ
from .execute import Execution, ExecResult
from .ownlog import OldLogFile, RunStart, log_file, measure, set_aside_own_logs
from .provenance import capture
from .script import job_script


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _provenance(spec: JobSpec) -> dict:
    try:
        return capture(spec)
    except Exception as e:  # provenance must never fail a run
        return {"error": f"provenance capture failed: {e}"}


class ProvenanceSnapshot:
    """Captures provenance in a background thread and writes provenance.json when done.

    `result` is the dict result.json carries; it is filled in place, so a result written before the
    capture ends still has whatever was found by then (the capture has its own time-outs)."""

    def __init__(self, spec: JobSpec, path: Path):
        self.spec, self.path = spec, path
        self.result: dict = {}
        self._thread = threading.Thread(target=self._run, name="provenance", daemon=True)

    def start(self) -> "ProvenanceSnapshot":
        self._thread.start()
        return self

    def _run(self) -> None:
        prov = _provenance(self.spec)
        self.result.update(prov)
        try:
            atomic_write_json(self.path, self.result)  # with what the software check found, if it came first
        except OSError:
            pass

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


def _script(spec: JobSpec) -> str:
    return job_script(spec)


def _build(spec: JobSpec, echo: TextIO | None) -> None:
    if builds_on_submit_host(spec):  # made by the submit host (launcher/node/compiled.py): never here
        if (why := built_problems(spec)) is not None:
            raise NotBuilt(why)
        if echo is not None:
            print(
                f"[launcher] build: done on the submit host for recipe {(spec.recipe_hash or '')[:16]}",
                file=echo,
                flush=True,
            )
        return
    if spec.build:
        build_once(spec, echo)


class NotBuilt(Exception):
    """The submit host has not made (or has made a stale) build of the row's recipe."""


def _data_kind(spec: JobSpec) -> str | None:
    if spec.data_root and (Path(spec.data_root) / "LAUNCHER_SYNTHETIC.json").is_file():
        return "synthetic"  # a COCO-format set made by `python -m launcher.data synth`, whatever the log calls it
    try:
        return parse.get_parser(spec.log_format).data_kind(parse.read_log(Path(spec.run_dir) / TRAIN_LOG))
    except (OSError, parse.ParseError):
        return None


class ResultNotWritten(OSError):
    """Not even a short result.json could be written in the run dir."""


class RunDirBusy(RuntimeError):
    """Another live attempt owns the run dir (launcher/lease.py): this one writes nothing there."""


def _first_line(text: str | None) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[0] if lines else "no reason recorded"


def run_node(run_dir: str | Path, echo: TextIO | None = None) -> Result:
    """Run the row whose spec.json is in `run_dir`; always ends with result.json written."""
    return NodeRun(run_dir, echo).run()


class NodeRun:
    """One row on this node, from its spec.json to its result.json."""

    def __init__(self, run_dir: str | Path, echo: TextIO | None = None, job_id: str | None = None) -> None:
        """`job_id`: the backend's name for this job; by default what it put in LAUNCHER_JOB_ID."""
        self.run_dir = Path(run_dir).resolve()
        self.spec = JobSpec.load(self.run_dir)
        self.spec.run_dir = str(self.run_dir)
        self.echo = echo
        self.started = now_iso()
        self.host = socket.gethostname()
        self.job_id = job_id or os.environ.get(JOB_ID_VAR) or None
        self.fields: dict = {}  # what the run has found out so far: provenance, returncode, log_path, data
        self.snapshot: ProvenanceSnapshot | None = None
        self.execution: Execution | None = None
        self.received: list[str] = []  # the signals that asked this node to stop
        self.interrupted_by: str | None = None  # the first signal this process received (not its command)
        self.since: RunStart | None = None  # set when the run starts: no log written before it counts
        self.sampler = None  # GPU / host telemetry while the command runs (launcher/node/telemetry.py)
        self.span = None  # a row over several nodes: this leader's place, watch and heartbeat (launcher/span.py)
        self.span_env: dict[str, str] = {}
        self.span_lost: str | None = None  # why the row lost one of its nodes

    def run(self) -> Result:
        try:
            lease.acquire(self.run_dir, "node")  # one live attempt per run dir; a dead one's lease is broken
        except lease.LeaseHeld as e:
            raise RunDirBusy(str(e)) from None
        set_aside(self.run_dir, RESULT_FILE)  # a result already here (a repeated submission) is kept, not overwritten
        write_status(
            self.run_dir, "running", started_at=self.started, host=self.host, pid=os.getpid(), job_id=self.job_id
        )
        self.since = RunStart.now(self.run_dir / STATUS_FILE)
        reserve_space(self.run_dir)  # a command that fills the disk still leaves room for the result
        with self._signals_stop_the_command():
            try:
                return self._run()
            except ResultNotWritten:
                raise
            except Exception as e:  # a bug of ours must still leave a row behind
                return self.finish(
                    "failed", error=f"launcher error on the node: {e!r}\n{traceback.format_exc()[-2000:]}"
                )

    def finish(self, status: str, **fields) -> Result:
        """Write the row's result.json (and the final marker): the run ends here, whatever happened."""
        if self.snapshot is not None:
            self.snapshot.join(90.0)
            if "software" in self.snapshot.result:  # the check came after the capture: the file gets it too
                atomic_write_json(self.run_dir / PROVENANCE_FILE, self.snapshot.result)
        if self.sampler is not None and "telemetry" not in fields:
            fields["telemetry"] = self.sampler.reduce(None)  # stops it; no window: the samples stay in their files
        if self.span_lost and status in ("cancelled", "incomplete", "failed"):  # its end came from the lost node
            rest = (fields.get("error") or "").split("\n", 1)
            status, fields["error"] = (
                "failed",
                (f"{self.span_lost}; the row's command was stopped then" + (f"\n{rest[1]}" if len(rest) > 1 else "")),
            )
        hosts = self.span[1].hosts() if self.span else [self.host]
        result = Result.for_spec(
            self.spec,
            status,
            started_at=self.started,
            host=self.host,
            job_id=self.job_id,
            hosts=hosts,
            **{**self.fields, **fields},
        )
        release_space(self.run_dir)
        set_aside(self.run_dir, RESULT_FILE)  # never overwritten without being kept (another writer's, say)
        try:
            write_result(self.run_dir, result)
        except OSError as e:  # no room even now: try once more without the bulky parts, then say so
            short = dataclasses.replace(result, provenance={}, error=(result.error or "")[:1000] or None)
            try:
                write_result(self.run_dir, short)
            except OSError:
                raise ResultNotWritten(
                    f"cannot write {self.run_dir / RESULT_FILE}: {e.strerror or e}; the row "
                    f"ended {status}: {_first_line(result.error)}"
                ) from e
        try:
            write_status(self.run_dir, status, started_at=self.started, finished_at=result.finished_at, host=self.host)
        except OSError:
            pass  # the result is what counts; a stale `running` marker reads as failed once this process is gone
        if self.span:
            mark_done(self.run_dir, self.span[0], status, self.span_lost)
            self.span[3].set()  # stop watching the other nodes
            self.span[2].stop()
        lease.release(self.run_dir)
        return result

    @contextmanager
    def _signals_stop_the_command(self) -> Iterator[None]:
        """While the row runs, SIGTERM / SIGINT / SIGHUP / SIGUSR2 stop its command (the row ends `cancelled`)."""

        def on_signal(signum, _frame):
            name = signal.Signals(signum).name
            if name == "SIGUSR2" and "by_pid" in (cancel_requested(self.run_dir) or {}):  # launcher.cancel: this row
                self.received.append("python -m launcher.cancel")
            else:
                self.received.append(name)
                self.interrupted_by = self.interrupted_by or name
            if self.execution is not None:
                self.execution.stop(f"received {name}")

        sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) + (
            (signal.SIGUSR2,) if hasattr(signal, "SIGUSR2") else ()
        )
        old_handlers = {}
        try:
            for s in sigs:
                old_handlers[s] = signal.signal(s, on_signal)
        except ValueError:  # not the main thread: the caller handles signals
            old_handlers = {}
        try:
            yield
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)

    def _run(self) -> Result:
        spec, run_dir = self.spec, self.run_dir
        # Provenance probes (nvidia-smi, the row's framework version in a subprocess) take seconds; they
        # run beside the build and the command's start-up rather than before them, so the launcher adds
        # no start-up time, and finish long before the window the figure is measured over.
        self.snapshot = ProvenanceSnapshot(spec, run_dir / PROVENANCE_FILE).start()
        self.fields["provenance"] = self.snapshot.result
        if spec.repo and not (spec.checkout_dir and Path(spec.checkout_dir).is_dir()):
            return self.finish(
                "failed",
                error=f"prepared work tree {spec.checkout_dir!r} is missing on {self.host}: "
                "prepare runs on the submit host; put cache_dir on a filesystem the "
                "nodes share",
            )
        managed = bool((spec.environment or {}).get("managed"))  # a venv the build makes (another stack's)
        if not managed and (refused := self._check_software()):
            return refused
        try:
            _build(spec, self.echo)
        except NotBuilt as e:
            return self.finish("failed", error=f"not built: {e}")
        except Exception as e:
            return self.finish("failed", error=f"build failed: {e}")
        if managed and (refused := self._check_software()):
            return refused
        script = _script(spec)
        write_new_text(run_dir / JOB_SCRIPT, script)  # replaces a planted link, never writes through it
        if self.received:
            return self.finish("cancelled", error=f"cancelled before start ({self.received[0]})")

        if spec.nodes > 1 and (refused := self._take_place()):
            return refused
        set_aside_own_logs(spec)
        self.sampler = telemetry.start(run_dir)
        self.execution = Execution(
            script, spec.exec_dir, {**command_environ(spec), **self.span_env}, run_dir / TRAIN_LOG, echo=self.echo
        ).start()
        if self.sampler is not None:
            self.sampler.watch(self.execution.proc.pid)  # the command's process group (start_new_session)
        if self.received:  # a signal that came while the command was being started had nothing to stop yet
            self.execution.stop(f"received {self.received[0]}")
        res = self.execution.wait(
            timeout_s=spec.time_limit_min * 60.0, poll=self._covered if spec.stop_when_covered else None
        )
        self.fields.update(returncode=res.returncode, log_path=str(log_file(spec)), data=_data_kind(spec))
        return self._outcome(res)

    def _take_place(self) -> Result | None:
        """The leader of a row over several nodes: rendezvous, heartbeat, a watch on the other nodes."""
        try:
            place, self.span_env, watch, heartbeat = leader_setup(self.run_dir, self.spec)
        except SpanError as e:
            return self.finish("failed", error=str(e))

        def lost(reason: str) -> None:
            self.span_lost = reason
            if self.execution is not None:
                self.execution.stop(f"lost a node: {reason}")

        self.span = (place, watch, heartbeat, watch_in_background(watch, lost))
        return None

    def _check_software(self) -> Result | None:
        """The row's environment against its `software:` (launcher/node/software.py): a failed row when it differs."""
        try:
            res = software.check(self.spec)
        except Exception as e:  # the check must not hide the run's own outcome behind a bug of ours
            self.fields["provenance"]["software"] = {"ok": None, "error": f"software check failed: {e!r}"}
            return None
        if res is None:
            return None
        self.fields["provenance"]["software"] = res.as_dict()
        if not res.ok:
            return self.finish("failed", error=software.failure_message(self.spec, res))
        if self.echo is not None:
            print(f"[launcher] software of {self.spec.impl} ({res.where}):\n{res.table()}", file=self.echo, flush=True)
        return None

    def _covered(self) -> bool:
        """Whether the log already covers the window (then the training can stop)."""
        try:
            measure(self.spec, self.since)
            return True
        except (parse.ParseError, OSError):
            return False

    def _outcome(self, res: ExecResult) -> Result:
        """How the command ended, as the row's result: cancelled, timeout, failed, incomplete or ok."""
        spec = self.spec
        if res.write_error:
            return self.finish(
                "failed",
                error=f"the command's output could not be written ({res.write_error}), so "
                f"the command was stopped after {res.elapsed_s:.0f} s: free space on "
                "that file system, or put the outputs where there is room. Last "
                f"output:\n{res.tail[-2000:]}",
            )
        if res.returncode is not None and res.returncode < 0 and not (res.stopped_early or res.timed_out):
            time.sleep(0.5)  # a scheduler signals every process of the job: let our own handler record it too
        killed_by = _signal_name(-res.returncode) if res.returncode is not None and res.returncode < 0 else None
        if (
            killed_by in ("SIGTERM", "SIGINT", "SIGHUP")
            and not (res.stopped_early or res.timed_out)
            and not self.received
        ):
            self.received.append(f"{killed_by} to the command")
        if res.cancelled or self.received:
            return self.finish(
                "cancelled",
                error=f"cancelled ({', '.join(self.received) or 'stopped'}) after "
                f"{res.elapsed_s:.0f} s; last output:\n{res.tail[-2000:]}",
            )
        if res.timed_out:
            return self.finish(
                "timeout",
                error=f"time limit of {spec.time_limit_min} min reached before the run "
                f"ended; raise hardware.time_limit_min. Last output:\n{res.tail[-2000:]}",
            )
        if res.returncode != 0 and not res.stopped_early:
            how = (
                f"was killed by {killed_by}" + (" (out of memory?)" if killed_by == "SIGKILL" else "")
                if killed_by
                else f"exited with status {res.returncode}"
            )
            last = res.tail.strip().splitlines()[-1] if res.tail.strip() else "(no output)"
            return self.finish("failed", error=f"command {how}: {last}\nlast output:\n{res.tail[-2000:]}")
        try:
            m = measure(spec, self.since)
        except parse.WindowNotCovered as e:
            return self.finish("incomplete", error=str(e))
        except (OldLogFile, parse.StaleLog) as e:
            return self.finish("failed", error=f"the {spec.log_format} log is not this run's own: {e}")
        except (parse.ParseError, OSError) as e:
            return self.finish("failed", error=f"cannot read the {spec.log_format} log {self.fields['log_path']}: {e}")
        refused, method = clock_refusal(m, res.elapsed_s), m.method
        if refused and simulated_clock(self.run_dir / TRAIN_LOG):  # the test stand-in's --fast: said in the figure
            method += f"; STAND-IN SIMULATED CLOCK: {refused.split(':')[0]} (its times were simulated, not spent)"
        elif refused:
            return self.finish("failed", error=refused)
        return self.finish(
            "ok",
            throughput=m.throughput,
            window=list(m.window),
            method=method,
            error_bound=m.error_bound,
            mean_step_time=m.mean_step_time,
            telemetry=self.sampler.reduce(m, spec) if self.sampler else {},
        )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m launcher.node RUN_DIR  (a run directory holding spec.json)", file=sys.stderr)
        return 2
    if not (Path(argv[0]) / SPEC_FILE).is_file():
        print(
            f"launcher.node: {argv[0]} holds no {SPEC_FILE}; plan the run with python -m launcher first",
            file=sys.stderr,
        )
        return 2
    try:
        JobSpec.load(argv[0])
    except (ValueError, TypeError, AttributeError) as e:  # a truncated or foreign spec.json: say so, leave a row
        said = unreadable_spec_result(argv[0], e)
        print(f"launcher.node: error: {said}", file=sys.stderr)
        return 2
    peer = main_peer_or_leader(argv[0], echo=sys.stdout)  # a row over several nodes: this node's part
    if peer is not None:
        return peer
    try:
        result = run_node(argv[0], echo=sys.stdout)
    except RunDirBusy as e:
        print(f"launcher.node: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the run dir cannot be written at all (a full disk, a read-only mount)
        print(f"launcher.node: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"status": result.status, "throughput": result.throughput, "error": result.error}))
    if result.status != "ok":
        print(f"launcher.node: {result.status}: {_first_line(result.error)}", file=sys.stderr)
    return 0 if result.status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
