"""Is an annotation file complete JSON? (issue 21, class 11: `data stage` called a truncated one "complete").

COCO's instances_train2017.json is 450 MB; loading it to check it would cost seconds and gigabytes at every
submission.  `incomplete(path)` reads it once as a stream instead (16 MiB at a time): strings are taken out
with one regular expression per block (C speed), the brackets left are counted, and a file is complete
when it opens with `{` or `[`, every bracket closes, no string is left open and nothing but white space
follows the last bracket.  That is not a full JSON validation, but a file cut short anywhere (a copy that
ran out of disk, an interrupted download) always fails it.  What was found is remembered per file
version (size, mtime) in `CACHE` beside the staged layouts, so a file is read once.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
BLOCK = 16 << 20
CACHE = ".complete-json.json"


def _scan(path: Path) -> str | None:
    depth, carry, started, ended, size = 0, b"", False, False, 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(BLOCK)
            if not chunk:
                break
            size += len(chunk)
            data = carry + chunk
            cleaned = _STRING.sub(b"", data)
            q = cleaned.find(b'"')
            if q >= 0:  # a string still open at the block's end: reread it with the next block
                tail = len(cleaned) - q
                carry, cleaned = data[len(data) - tail :], cleaned[:q]
            else:
                carry = b""
            body = cleaned.strip()
            if not body:
                continue
            if ended:
                return f"there is more after the end of its JSON value (byte {size - len(chunk)} on)"
            if not started:
                if body[:1] not in (b"{", b"["):
                    return "it does not start with { or [: not a JSON annotation file"
                started = True
            opened = body.count(b"{") + body.count(b"[")
            closed = body.count(b"}") + body.count(b"]")
            depth += opened - closed
            if depth < 0:
                return "it closes more brackets than it opens"
            if depth == 0:
                last = max(body.rfind(b"}"), body.rfind(b"]"))
                if body[last + 1 :].strip():
                    return "there is more after the end of its JSON value"
                ended = True
    if not started:
        return "it is empty"
    if carry:
        return f"it ends inside a string after {size} bytes: cut short"
    if depth > 0:
        return (
            f"it ends after {size} bytes with {depth} bracket(s) still open: cut short (a copy or a download "
            "that did not finish)"
        )
    return None


def incomplete(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str | None:
    """Why the JSON file at `path` is not complete, or None when it is (a missing file: None, said elsewhere)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return None
    real, version = os.path.realpath(path), [st.st_size, st.st_mtime_ns]
    cache_file = Path(cache_dir) / CACHE if cache_dir else None
    cache: dict = {}
    if cache_file is not None:
        try:
            cache = json.loads(cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cache = {}
        if isinstance(cache, dict) and cache.get(real) == version:
            return None
    try:
        why = _scan(path)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if why is None and cache_file is not None and isinstance(cache, dict):
        cache[real] = version
        try:
            from ..rundir import atomic_write_json

            atomic_write_json(cache_file, cache)
        except OSError:
            pass  # only a cache
    return why
