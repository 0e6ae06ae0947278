"""Pretrained weights, offline: every row's files in one directory (`weights_dir`), fetched once on a host
with internet, and each row's command pointed at its local file.

Five seed rows would download their ImageNet backbone while the job runs (detectron2's `detectron2://`,
maskrcnn-benchmark's `catalog://`, mmdetection's `open-mmlab://`, Detectron's https URL, which it re-checks
online even when cached, matterport's Keras `get_file`); SimpleDet and tensorpack expect a file in the work
tree. Compute nodes are often offline, so a row lists its files as data (`impl.weights`: `dest` under
weights_dir, `urls`, and whatever checksum upstream publishes) and its command names
`${weights_dir}/<dest>`:

    python -m launcher.weights fetch [impl=a,b] [weights_dir=/shared/weights] [--force]   # host with internet
    python -m launcher.weights check [impl=...]     # verify every file against its checksums, record new ones
    python -m launcher.weights list  [impl=...]

Checksums: a published sha256 or md5 (or the md5 in a published `.md5sum` file, or the sha256 prefix a
torch-hub file name carries) is verified. Where upstream publishes none, the first fetch records the file's
sha256 in `weights.lock.json` beside the weights and says so; every later fetch and check compares with it
(so a file that changes upstream, or on disk, is caught). Before submission (`problems`) each row's files
must exist and match the size the lock recorded.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Callable

from .rundir import atomic_write_json, now_iso
from .locks import locked
import argparse
from .cli import plan_rows

LOCK_FILE = "weights.lock.json"
Log = Callable[[str], None]
#: the longest a whole download may take (each URL), whatever its pace (--deadline)
DEFAULT_DEADLINE_S = 3600.0
RECORDED = "recorded on first fetch: no checksum is published upstream; later fetches and checks compare with it"


class WeightsError(RuntimeError):
    """A file that cannot be fetched or does not match its checksum; the message says which and why."""


def read_lock(weights_dir: str | Path) -> dict[str, Any]:
    p = Path(weights_dir) / LOCK_FILE
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # truncated (a full disk), edited by hand: say so, never a traceback
        raise WeightsError(
            f"{p} cannot be read ({e}); it records the checksums of the files fetched so far: "
            f"restore it, or move it aside (mv {p} {p}.bad) and fetch again (every file is then "
            "verified again against what upstream publishes, or recorded anew)"
        ) from e
    if not isinstance(data, dict):
        raise WeightsError(f"{p} is not a weights lock file (a JSON object); move it aside and fetch again")
    return data


def _update_lock(weights_dir: Path, dest: str, entry: dict[str, Any]) -> None:
    with locked(weights_dir / f".{LOCK_FILE}.lock"):
        lock = read_lock(weights_dir)
        lock[dest] = entry
        atomic_write_json(weights_dir / LOCK_FILE, lock)


def digests(path: Path) -> dict[str, Any]:
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
            md5.update(block)
            size += len(block)
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest(), "size": size}


def _get(url: str, timeout: float, limit: int = 1 << 16) -> bytes:
    """A small published file (an `.md5sum`): from a source the weights step may read, at most `limit` bytes,
    within `timeout` for the whole transfer."""
    import io

    from .weightsafe import read_whole, source_problem

    why = source_problem(url)
    if why:
        raise WeightsError(why)
    buf = io.BytesIO()

    class _Bounded:
        def write(self, block: bytes) -> None:
            if buf.tell() + len(block) > limit:
                raise WeightsError(f"more than {limit} bytes: not a checksum file")
            buf.write(block)

    read_whole(url, _Bounded(), timeout, timeout)
    return buf.getvalue()


def expected(w: dict[str, Any], timeout: float = 60, online: bool = True) -> dict[str, str]:
    """The checksums upstream publishes for W: from its config, and (online) the md5 of its `.md5sum` URL."""
    out = {k: str(w[k]).lower() for k in ("sha256", "md5", "sha256_prefix") if w.get(k)}
    if online and w.get("md5_url") and "md5" not in out:
        try:
            out["md5"] = _get(w["md5_url"], timeout).decode().split()[0].lower()
        except (OSError, IndexError, UnicodeDecodeError, WeightsError, http.client.HTTPException) as e:
            raise WeightsError(f"cannot read the published md5 of {w['dest']} at {w['md5_url']}: {e}") from e
    return out


def mismatches(found: dict[str, Any], want: dict[str, str], locked: dict[str, Any] | None) -> list[str]:
    out = [f"{k} {found[k]} != published {v}" for k, v in want.items() if k in ("sha256", "md5") and found[k] != v]
    if want.get("sha256_prefix") and not found["sha256"].startswith(want["sha256_prefix"]):
        out.append(f"sha256 {found['sha256']} does not start with {want['sha256_prefix']} (the file name's hash)")
    if locked and locked.get("sha256") and locked["sha256"] != found["sha256"]:
        out.append(f"sha256 {found['sha256']} != {locked['sha256']} recorded in {LOCK_FILE} ({locked.get('checksum')})")
    return out


def _how(want: dict[str, str], w: dict[str, Any]) -> str:
    if not want:
        return RECORDED
    src = {
        "sha256": "sha256 published (row config)",
        "md5": f"md5 published ({w.get('md5_url') or 'row config'})",
        "sha256_prefix": "sha256 prefix of the file name",
    }
    return ", ".join(src[k] for k in want) + " verified"


def _download(
    w: dict[str, Any], path: Path, timeout: float, log: Log, deadline_s: float = DEFAULT_DEADLINE_S
) -> tuple[str, Path]:
    """Each URL in turn into a `.part` file beside `path` (created exclusively, never through a link), whole:
    the server's Content-Length must arrive, and the whole download must end within `deadline_s` (a server
    that trickles a byte a second is given up on); a `.part` that does not become the file is removed."""
    from .weightsafe import read_whole, source_problem

    errors = []
    for url in w.get("urls") or []:
        tmp = path.with_name(f".{path.name}.part-{os.getpid()}-{secrets.token_hex(4)}")
        why = source_problem(url)
        if why:
            errors.append(f"{url}: {why}")
            continue
        log(f"[weights] fetching {url} -> {path}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
            with os.fdopen(fd, "wb") as out:
                read_whole(url, out, timeout, deadline_s)
            return url, tmp
        except (OSError, WeightsError, http.client.HTTPException) as e:
            errors.append(f"{url}: {e}")
            tmp.unlink(missing_ok=True)
    raise WeightsError(
        f"could not fetch {w['dest']} from any of its URLs (impl.weights[].urls):\n  "
        + "\n  ".join(errors or ["no URL configured"])
    )


def fetch(
    weights_dir: str | Path,
    w: dict[str, Any],
    *,
    force: bool = False,
    log: Log = print,
    timeout: float = 60,
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> str:
    """Make weights_dir/<dest> hold W's file, verified; returns what happened (one line)."""
    from .weightsafe import dest_path

    weights_dir = Path(weights_dir)
    path = dest_path(weights_dir, w["dest"])
    want = expected(w, timeout)
    locked = read_lock(weights_dir).get(w["dest"])
    if path.is_file() and not force:
        return check(weights_dir, w, want=want)
    path.parent.mkdir(parents=True, exist_ok=True)
    url, tmp = _download(w, path, timeout, log, deadline_s)
    found = digests(tmp)
    bad = mismatches(found, want, locked)
    if bad:
        tmp.unlink(missing_ok=True)
        raise WeightsError(
            f"{w['dest']} from {url}: " + "; ".join(bad) + " (nothing was written; if upstream "
            f"really changed the file, remove its entry from {weights_dir / LOCK_FILE})"
        )
    os.replace(tmp, path)
    _update_lock(weights_dir, w["dest"], {**found, "url": url, "fetched_at": now_iso(), "checksum": _how(want, w)})
    if not want:
        return (
            f"{path}: fetched; no checksum is published for it: recorded sha256 {found['sha256']} in "
            f"{weights_dir / LOCK_FILE} (first fetch)"
        )
    return f"{path}: fetched, {_how(want, w)}"


def check(weights_dir: str | Path, w: dict[str, Any], *, want: dict[str, str] | None = None) -> str:
    """Verify weights_dir/<dest> against its checksums and the lock (recording it there when it is new)."""
    from .weightsafe import dest_path

    weights_dir = Path(weights_dir)
    path = dest_path(weights_dir, w["dest"])
    if not path.is_file():
        raise WeightsError(f"{path} is missing: python -m launcher.weights fetch (on a host with internet)")
    locked = read_lock(weights_dir).get(w["dest"])
    if want is None:  # offline once recorded: the lock's sha256 was verified against what upstream publishes
        want = expected(w, online=not locked)
    found = digests(path)
    bad = mismatches(found, want, locked)
    if bad:
        raise WeightsError(f"{path}: " + "; ".join(bad) + " (fetch it again with --force)")
    if not locked:
        _update_lock(
            weights_dir,
            w["dest"],
            {
                **found,
                "url": None,
                "fetched_at": None,
                "checksum": _how(want, w).replace("first fetch", "first check (placed by hand)"),
            },
        )
        return f"{path}: present; recorded sha256 {found['sha256']} in {weights_dir / LOCK_FILE}"
    return f"{path}: present, sha256 matches {LOCK_FILE}" + (f"; {_how(want, w)}" if want else "")


def problems(spec) -> list[str]:
    """Before submission: every file the row loads is in weights_dir (and has the size the lock recorded)."""
    out = []
    lock = read_lock(spec.weights_dir) if spec.weights_dir else {}
    if spec.weights and any(c in spec.weights_dir for c in ", \t\n"):
        out.append(
            f"weights_dir={spec.weights_dir!r} holds a comma or a space, which the rows' commands cannot "
            f"take (mmdetection splits --options at commas): choose a plain path"
        )
    for w in spec.weights or []:
        path = Path(w["path"])
        try:
            from .weightsafe import dest_path

            dest_path(spec.weights_dir, w["dest"])
        except WeightsError as e:
            out.append(f"weights: {e}")
            continue
        if not path.is_file():
            out.append(
                f"weights: {path} is missing; on a host with internet: python -m launcher.weights fetch "
                f"impl={spec.impl} weights_dir={spec.weights_dir} (from {', '.join(w.get('urls') or ['?'])})"
            )
        elif w["dest"] in lock and lock[w["dest"]].get("size") not in (None, path.stat().st_size):
            out.append(
                f"weights: {path} has {path.stat().st_size} bytes, {LOCK_FILE} recorded "
                f"{lock[w['dest']]['size']}: fetch it again (python -m launcher.weights fetch --force)"
            )
    return out


def describe(spec) -> list[str]:
    if not spec.weights:
        return ["weights:         none (the row loads no pretrained file)"]
    lock = read_lock(spec.weights_dir) if spec.weights_dir else {}
    lines = []
    for i, w in enumerate(spec.weights):
        state = "present" if Path(w["path"]).is_file() else "MISSING (python -m launcher.weights fetch)"
        sums = ", ".join(f"{k} {w[k]}" for k in ("sha256", "md5", "md5_url", "sha256_prefix") if w.get(k)) or (
            "sha256 in the lock" if w["dest"] in lock else "none published: sha256 recorded on first fetch"
        )
        lines.append(
            f"{'weights:' if i == 0 else '':<17}{w['path']} [{state}]; from {(w.get('urls') or ['?'])[0]}; "
            f"checksum: {sums}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m launcher.weights", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("fetch", "check", "list"))
    ap.add_argument(
        "overrides", nargs="*", help="config overrides as for python -m launcher (impl=a,b weights_dir=...)"
    )
    ap.add_argument("--force", action="store_true", help="fetch again even when the file is there")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds a network read may wait")
    ap.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE_S,
        help="seconds a whole download may take (default %(default)s): a slower one is given up on",
    )
    args = ap.parse_args(argv)

    seen: dict[str, dict] = {}
    for _, spec in plan_rows(args.overrides):
        for w in spec.weights:
            seen.setdefault(w["dest"], {**w, "weights_dir": spec.weights_dir, "rows": []})["rows"].append(spec.impl)
    bad = 0
    for w in seen.values():
        try:
            if args.action == "list":
                print(f"{w['path']}  ({', '.join(w['rows'])}) <- {', '.join(w.get('urls') or [])}")
            elif args.action == "fetch":
                print(fetch(w["weights_dir"], w, force=args.force, timeout=args.timeout, deadline_s=args.deadline))
            else:
                print(check(w["weights_dir"], w))
        except WeightsError as e:
            bad += 1
            print(f"launcher.weights: error: {e}", file=sys.stderr)
        except OSError as e:  # an unwritable weights_dir, a full disk: the place and the way out, no traceback
            bad += 1
            print(
                f"launcher.weights: error: cannot write {e.filename or w['weights_dir']}: {e.strerror or e}; "
                f"point weights_dir at a directory you can write to (weights_dir=/path/you/own)",
                file=sys.stderr,
            )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
