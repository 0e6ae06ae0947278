"""The software probe: run by launcher/node/software.py with the row's own Python, inside its environment.

`python -c <this file's text> KEYS_JSON WANTED_JSON` prints one line, MARK + a JSON object
{key: {"found": str|None, "problem": str|None}}. It runs on the row's Python (3.6 and later: no newer
syntax here) and imports nothing from the launcher, which that environment need not have.
"""

import ctypes
import json
import os
import platform
import re
import subprocess
import sys

MARK = "LAUNCHER-SOFTWARE "
MODS = {"pytorch": "torch", "torch": "torch", "tensorflow": "tensorflow"}


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
    """A package's version.py may say more than its metadata (torch's "2.14.1+cu130": the CUDA build it is)."""
    try:
        with open(path) as fh:
            m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", fh.read(), re.M)
        return m.group(1) if m and m.group(1).split("+")[0] == v else v
    except Exception:
        return v


def lists(dd, rel):
    """Whether distribution DD's file list names REL. A wheel's RECORD is searched as text: torch's has ~15,000
    lines, and building a path object for each (`dd.files`) took 60 ms of the node's start-up."""
    try:
        record = dd.read_text("RECORD")
    except Exception:
        record = None
    if record is None:  # an egg-info or a distribution without RECORD: its own listing
        return any(str(f) == rel for f in (dd.files or ()))
    text = "\n" + record.replace("\r\n", "\n")
    return ("\n%s," % rel) in text or ('\n"%s",' % rel.replace('"', '""')) in text


def owned(name, dists):
    """The version of the installed distribution whose own files hold the module Python would import, read
    without importing it (torch takes seconds to import, and this runs before the command); None: import it."""
    try:
        import importlib.util
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
            if dd.version and lists(dd, rel):
                return stated(os.path.join(os.path.dirname(origin), "version.py"), str(dd.version))
    except Exception:
        return None
    return None


def cudnn_str(v):
    if not v:
        return None
    v = int(v)
    major = v // 10000 if v >= 10000 else v // 1000
    rest = v % 10000 if v >= 10000 else v % 1000
    return "%d.%d.%d" % (major, rest // 100, rest % 100)


def lib(names, conv):
    """conv(the first of `names` that loads and answers), else None."""
    for n in names:
        try:
            handle = ctypes.CDLL(n)
        except OSError:
            continue
        try:
            return conv(handle)
        except Exception:
            continue
    return None


def runtime_version(handle):
    v = ctypes.c_int()
    handle.cudaRuntimeGetVersion(ctypes.byref(v))
    return "%d.%d" % (v.value // 1000, (v.value % 1000) // 10)


def cudnn_version(handle):
    handle.cudnnGetVersion.restype = ctypes.c_size_t
    return cudnn_str(handle.cudnnGetVersion())


def cuda_pair(keys):
    """(CUDA, cuDNN, where they were read): the framework's build first, else the libraries that load."""
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
                i = getattr(b, "build_info", {})
                c, d = i.get("cuda_version"), i.get("cudnn_version")
            return c, d, "TensorFlow's build"
        except Exception:
            pass
    c = lib(
        [
            "libcudart.so",
            "libcudart.so.10.0",
            "libcudart.so.10.1",
            "libcudart.so.10.2",
            "libcudart.so.11.0",
            "libcudart.so.12",
        ],
        runtime_version,
    )
    d = lib(["libcudnn.so", "libcudnn.so.7", "libcudnn.so.8", "libcudnn.so.9"], cudnn_version)
    return c, d, "the libraries that load"


def probe(keys, wanted):
    out, pair = {}, None
    for k in keys:
        f, p = None, None
        if k == "python":
            f = platform.python_version()
        elif k in ("cuda", "cudnn"):
            pair = pair or cuda_pair(keys)
            f = pair[0] if k == "cuda" else pair[1]
            p = None if f else "not found (%s says none: a CPU-only build?)" % pair[2]
        elif k == "apex":
            f = dist("apex")
            try:
                import apex.amp  # noqa: F401
            except Exception as e:
                p = "apex.amp does not import (%s: %s)" % (type(e).__name__, str(e)[:100])
        elif k == "caffe2":
            f, p = mod("torch")
            try:
                from caffe2.python import workspace

                if not workspace.has_gpu_support:
                    p = "Caffe2 has no GPU support in this build"
                else:
                    import detectron.utils.env as denv

                    denv.get_detectron_ops_lib()
            except Exception as e:
                p = "Caffe2/Detectron ops: %s: %s" % (type(e).__name__, str(e)[:150])
        elif k == "mxnet_ops":
            try:
                import mxnet as mx

                gone = [
                    n
                    for n in re.split(r"[\s,]+", wanted[k].strip())
                    if n and not (hasattr(mx.sym.contrib, n) or hasattr(mx.sym, n))
                ]
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
                t = subprocess.run(
                    ["mpirun", "--version"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    universal_newlines=True,
                    timeout=30,
                ).stdout
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
    return out


#: keys whose answer needs an import or a subprocess (everything else is `python` or a distribution's metadata)
NEEDS_IMPORT = ("cuda", "cudnn", "apex", "caffe2", "mxnet_ops", "horovod_built", "openmpi")


def probe_metadata_only(keys):
    """probe(keys) when every key is answered from the interpreter and installed metadata alone, else None.

    Imports nothing of the row's frameworks, so the launcher's own process may call it for a row that runs the
    launcher's Python (environment.kind=launcher): the same answer as the subprocess, without its start-up."""
    if any(k in NEEDS_IMPORT for k in keys):
        return None
    out = {}
    for k in keys:
        if k == "python":
            out[k] = {"found": platform.python_version(), "problem": None}
            continue
        f = owned(MODS.get(k, k), (k, k.replace("_", "-")))
        if f is None:  # no distribution owns the module: only importing it can tell
            return None
        out[k] = {"found": f, "problem": None}
    return out


if __name__ == "__main__":
    print(MARK + json.dumps(probe(json.loads(sys.argv[1]), json.loads(sys.argv[2]))))
