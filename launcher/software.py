"""The software a row's environment really has, against the stack its figure was published with.

On the node, before the command, `check(spec)` runs one small probe *inside the row's environment* (the
same wrapper and process environment as the command: conda run, apptainer exec, a venv's activate) and
compares what it finds with `impl.environment.software`. A mismatch fails the row at once with a table of
wanted vs found, instead of a traceback deep in a 2020 framework (or, worse, a figure from other
software); what was found goes into provenance either way.

Keys the probe knows (anything else is looked up as an importable module or installed distribution):
`python`; `pytorch`/`torch`, `torchvision`, `tensorflow`, `keras`, `mxnet`, `mmcv`, `horovod` (the
module's version: from the metadata of the installed distribution that owns the file Python would import,
without importing it, since this runs in series before the command and torch alone takes seconds to
import; imported when no distribution owns it, a conda package without a RECORD say); `apex` (its
version, and `apex.amp` must import); `caffe2` (the PyTorch build that carries it, with GPU support and Detectron's ops library); `mxnet_ops` (operator names that must exist in
the MXNet build: SimpleDet's); `horovod_built` (what horovod was compiled with, e.g. "mpi nccl cuda": each
`hvd.<x>_built()` must be true, not just the package installed); `openmpi` (`mpirun --version`); `cuda`, `cudnn` (what the framework was
built with, else the libraries that load).

Matching: a plain version matches by its leading components (`3.7` matches 3.7.12, `1.15.0` does not match
1.15.5); a specifier (`>=2.1`, `>=1.4,<2`) is evaluated; `cuda` and `cudnn` match on major.minor and a
patch difference is noted, not failed (the conda PyTorch 1.5 build reports cuDNN 7.6.3, say); a value
known to fewer components (TensorFlow 1.15 reports cuDNN "7") matches on those it has, and says so.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from typing import Any

MARK = "LAUNCHER-SOFTWARE "
TIMEOUT_S = 180.0

# Runs with the row's own Python (3.6+): prints MARK + {key: {"found": str|None, "problem": str|None}}.
PROBE = r'''
import json, sys, platform, re, subprocess, ctypes
keys = json.loads(sys.argv[1]); wanted = json.loads(sys.argv[2]); out = {}
def dist(name):
    try:
        from importlib import metadata
        return metadata.version(name)
    except Exception:
        pass
    try:
        import pkg_resources
        return pkg_resources.get_distribution(name).version
    except Exception:
        return None
def mod(name, dists=()):
    try:
        m = __import__(name)
    except Exception as e:
        return None, "import %s failed: %s: %s" % (name, type(e).__name__, str(e)[:150])
    v = getattr(m, "__version__", None)
    for d in dists:
        v = v or dist(d)
    return (str(v) if v else None), (None if v else "%s has no version" % name)
def stated(path, v):
    # A package's version.py may say more than its metadata (torch's "2.14.1+cu130": the CUDA build it is)
    try:
        with open(path) as fh:
            m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", fh.read(), re.M)
        return m.group(1) if m and m.group(1).split("+")[0] == v else v
    except Exception:
        return v
def owned(name, dists):
    # The version of the installed distribution whose own files hold the module Python would import, read
    # without importing it (torch takes seconds to import, and this runs before the command); None: import it.
    try:
        import importlib.util, os
        from importlib import metadata
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if not origin or not os.path.isfile(origin):
            return None
        def names():  # the likely names first: listing every installed distribution reads all of them
            for d in (name,) + tuple(dists):
                yield d
            for d in getattr(metadata, "packages_distributions", dict)().get(name, []):
                yield d
        for d in names():
            try:
                dd = metadata.distribution(d)
            except Exception:
                continue
            rel = os.path.relpath(os.path.realpath(origin), os.path.realpath(str(dd.locate_file(""))))
            if dd.version and any(str(f) == rel for f in (dd.files or ())):
                return stated(os.path.join(os.path.dirname(origin), "version.py"), str(dd.version))
    except Exception:
        return None
    return None
def cudnn_str(v):
    if not v: return None
    v = int(v); major = v // 10000 if v >= 10000 else v // 1000
    rest = v % 10000 if v >= 10000 else v % 1000
    return "%d.%d.%d" % (major, rest // 100, rest % 100)
def lib(names, fn, conv):
    for n in names:
        try:
            l = ctypes.CDLL(n)
        except OSError:
            continue
        try:
            return conv(l)
        except Exception:
            continue
    return None
def rt(l):
    v = ctypes.c_int(); getattr(l, "cudaRuntimeGetVersion")(ctypes.byref(v))
    return "%d.%d" % (v.value // 1000, (v.value % 1000) // 10)
def dnn(l):
    l.cudnnGetVersion.restype = ctypes.c_size_t; return cudnn_str(l.cudnnGetVersion())
def cuda_pair():
    if any(k in keys for k in ("pytorch", "torch", "caffe2", "torchvision", "mmcv", "apex")):
        try:
            import torch
            d = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
            return torch.version.cuda, cudnn_str(d), "PyTorch's build"
        except Exception:
            pass
    if any(k in keys for k in ("tensorflow", "keras", "horovod")):
        try:
            from tensorflow.python.platform import build_info as b
            c, d = getattr(b, "cuda_version_number", None), getattr(b, "cudnn_version_number", None)
            if c is None:
                i = getattr(b, "build_info", {}); c, d = i.get("cuda_version"), i.get("cudnn_version")
            return c, d, "TensorFlow's build"
        except Exception:
            pass
    c = lib(["libcudart.so", "libcudart.so.10.0", "libcudart.so.10.1", "libcudart.so.10.2", "libcudart.so.11.0",
             "libcudart.so.12"], "cudaRuntimeGetVersion", rt)
    d = lib(["libcudnn.so", "libcudnn.so.7", "libcudnn.so.8", "libcudnn.so.9"], "cudnnGetVersion", dnn)
    return c, d, "the libraries that load"
MODS = {"pytorch": "torch", "torch": "torch", "tensorflow": "tensorflow"}
pair = None
for k in keys:
    f, p = None, None
    if k == "python":
        f = platform.python_version()
    elif k in ("cuda", "cudnn"):
        pair = pair or cuda_pair()
        f = pair[0] if k == "cuda" else pair[1]
        p = None if f else "not found (%s says none: a CPU-only build?)" % pair[2]
    elif k == "apex":
        f = dist("apex")
        try:
            import apex.amp
        except Exception as e:
            p = "apex.amp does not import (%s: %s)" % (type(e).__name__, str(e)[:100])
    elif k == "caffe2":
        f, p = mod("torch")
        try:
            from caffe2.python import workspace
            if not workspace.has_gpu_support: p = "Caffe2 has no GPU support in this build"
            else:
                import detectron.utils.env as denv
                denv.get_detectron_ops_lib()
        except Exception as e:
            p = "Caffe2/Detectron ops: %s: %s" % (type(e).__name__, str(e)[:150])
    elif k == "mxnet_ops":
        try:
            import mxnet as mx
            gone = [n for n in re.split(r"[\s,]+", wanted[k].strip()) if n and not
                    (hasattr(mx.sym.contrib, n) or hasattr(mx.sym, n))]
            f = "missing: " + " ".join(gone) if gone else wanted[k]
        except Exception as e:
            p = "import mxnet failed: %s" % e
    elif k == "horovod_built":
        # what horovod was compiled with (hvd.<x>_built()), not what its metadata says: a horovod built without
        # CUDA or NCCL installs and passes a version check, then fails at hvd.init() or falls back to MPI
        try:
            import horovod.tensorflow as hvd
            gone = []
            for c in [c for c in re.split(r"[\s,]+", wanted[k].strip()) if c]:
                fn = getattr(hvd, c + "_built", None)
                if fn is not None:
                    ok = bool(fn())
                elif c == "cuda" and getattr(hvd, "nccl_built", None) is not None:
                    ok = bool(hvd.nccl_built())  # horovod < 0.20 has no cuda_built(); its NCCL path is CUDA's
                else:
                    ok = False
                if not ok:
                    gone.append(c)
            f = "not built: " + " ".join(gone) if gone else wanted[k]
        except Exception as e:
            p = "import horovod.tensorflow failed: %s: %s" % (type(e).__name__, str(e)[:150])
    elif k == "openmpi":
        try:
            t = subprocess.run(["mpirun", "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=30).stdout
            m = re.search(r"Open MPI\)?\s*(\d+\.\d+(?:\.\d+)?)", t)
            f = m.group(1) if m else None
            p = None if m else "mpirun --version: " + (t.strip().splitlines() or ["no output"])[0][:100]
        except Exception as e:
            p = "mpirun: %s" % e
    else:
        name, dists = MODS.get(k, k), (k, k.replace("_", "-"))
        f = owned(name, dists)
        if f is None:
            f, p = mod(name, dists)
    out[k] = {"found": f, "problem": p}
print("LAUNCHER-SOFTWARE " + json.dumps(out))
'''


@dataclass
class Item:
    key: str
    wanted: str
    found: str | None
    ok: bool
    note: str = ""


@dataclass
class Check:
    items: list[Item] = field(default_factory=list)
    error: str | None = None  # the probe itself could not run
    where: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and all(i.ok for i in self.items)

    def table(self) -> str:
        rows = [("item", "wanted", "found", "")] + [(i.key, i.wanted, i.found or "-", ("ok" if i.ok else "MISMATCH")
                                                      + (f" ({i.note})" if i.note else "")) for i in self.items]
        w = [max(len(r[c]) for r in rows) for c in range(3)]
        return "\n".join(f"  {a:<{w[0]}}  {b:<{w[1]}}  {c:<{w[2]}}  {d}".rstrip() for a, b, c, d in rows)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "where": self.where, "error": self.error,
                "wanted": {i.key: i.wanted for i in self.items}, "found": {i.key: i.found for i in self.items},
                "notes": {i.key: i.note for i in self.items if i.note}}


_OPS = re.compile(r"^\s*(==|!=|>=|<=|~=|>|<)\s*(\S+)\s*$")


def _num(v: str) -> tuple:
    """Leading numeric components: '1.15.0rc2' -> (1, 15, 0), '2.14.1+cpu' -> (2, 14, 1)."""
    out = []
    for part in v.split("+")[0].split("."):
        m = re.match(r"\d+", part)
        if not m:
            break
        out.append(int(m.group()))
        if m.group() != part:
            break
    return tuple(out)


def _spec_ok(wanted: str, found: str) -> bool:
    f = _num(found)
    for clause in wanted.split(","):
        m = _OPS.match(clause)
        if not m:
            return False
        op, v = m.group(1), _num(m.group(2))
        n = max(len(f), len(v))
        a, b = f + (0,) * (n - len(f)), v + (0,) * (n - len(v))
        ok = {"==": a == b, "!=": a != b, ">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b,
              "~=": a >= b and a[:len(v) - 1] == b[:len(v) - 1]}[op]
        if not ok:
            return False
    return True


def matches(key: str, wanted: str, found: str | None) -> tuple[bool, str]:
    """(match, note) for one item; see the module docstring for the rules."""
    wanted = str(wanted).strip()
    if found is None:
        return False, ""
    if key in ("mxnet_ops", "horovod_built"):
        return found == wanted, ""
    if _OPS.match(wanted.split(",")[0]):
        return _spec_ok(wanted, found), ""
    w = [p for p in wanted.split("+")[0].split(".")]
    f = [p for p in str(found).split("+")[0].split(".")]
    if key in ("cuda", "cudnn"):
        common = min(len(w), len(f), 2)
        ok = w[:common] == f[:common]
        if ok and len(f) < min(len(w), 2):
            return True, f"only {'.'.join(f)} is known"
        if ok and w[:3] != f[:3] and len(f) >= 3 and len(w) >= 3:
            return True, "patch level differs"
        return ok, ""
    return f[:len(w)] == w, ""


def check(spec, timeout_s: float = TIMEOUT_S) -> Check | None:
    """Probe SPEC's environment for its `software`; None when the row declares none or opts out."""
    from .prepare.environment import command_environ, environment_for, wrap_command

    env_cfg = spec.environment or {}
    wanted = {str(k): str(v) for k, v in (env_cfg.get("software") or {}).items()}
    if not wanted or env_cfg.get("check") is False:
        return None
    result = Check(where=environment_for(spec).describe())
    cmd = f"python -c {shlex.quote(PROBE)} {shlex.quote(json.dumps(list(wanted)))} {shlex.quote(json.dumps(wanted))}"
    try:
        p = subprocess.run(["bash", "-c", wrap_command(spec, cmd)], cwd=spec.exec_dir if spec.exec_dir.is_dir() else None,
                           env=command_environ(spec), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        result.error = f"the software probe did not finish within {timeout_s:.0f} s in {result.where}"
        return result
    line = next((ln for ln in reversed(p.stdout.splitlines()) if ln.startswith(MARK)), None)
    if line is None:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-8:])
        result.error = f"the software probe could not run in {result.where} (exit {p.returncode}):\n{tail}"
        return result
    found = json.loads(line[len(MARK):])
    for key, want in wanted.items():
        got = found.get(key, {})
        ok, note = matches(key, want, got.get("found"))
        if got.get("problem"):
            ok, note = False, got["problem"]
        result.items.append(Item(key, want, got.get("found"), ok, note))
    return result


def failure_message(spec, result: Check) -> str:
    """The row's error when its environment does not have its software: what, where, and the way out."""
    recipe = (spec.environment or {}).get("recipe") or "environment.yml"
    head = f"the environment does not have the software {spec.impl} was measured with ({result.where}):"
    body = result.error if result.error else result.table()
    return (f"{head}\n{body}\nBuild the row's environment (python -m launcher.env create impl={spec.impl}; recipe "
            f"jobs/{spec.impl}/{recipe}; docs/cluster.md, 'Environments'), point impl.environment at it, or run "
            f"anyway with impl.environment.check=false (the figure is then not the published stack's)")
