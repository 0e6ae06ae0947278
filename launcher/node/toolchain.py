"""The CUDA toolchain a row's compiled extensions are built with, checked before any compiler runs, and the
proof afterwards that what was built holds device code for every GPU architecture of the hardware group.

Used by `build_once` for rows whose build compiles CUDA extensions (`impl.environment.cuda_extensions`)
when the hardware group has GPUs (`hardware.compute_capability`: 7.0 V100, 8.0 A100, 9.0 H100):

* **Which toolkit** (`cuda_toolkit`, top-level key): `auto` takes `$CUDA_HOME`, else the nvcc on `PATH`
  (its real toolkit is where `nvcc -dryrun` says `TOP=`), else NVIDIA's compiler and headers from the
  package index, at the versions that match the CUDA of the launcher's torch (`INDEX_TOOLKITS`: unpinned,
  nvcc's dependencies float to a newer CUDA and the headers no longer match the compiler), installed once
  under `<cache_dir>/toolchains/cuda-<X.Y>/` with a `home/` of links laid out as a CUDA_HOME. `index` always
  takes the index's; a path names a toolkit directory.  So building needs neither a GPU nor the cluster's
  module system.
* **Checks before the compiler** (`toolchain_problems`): nvcc's CUDA against the framework's
  (`torch.version.cuda`, or the row's `software.cuda`): the same major version; the host C++ compiler within
  the range nvcc accepts (read from the toolkit's own `crt/host_config.h`, `#if __GNUC__ > N`, with the
  documented lower bounds, e.g. CUDA 10.1 needs gcc 5-8); `CUDA_HOME` holding `bin/nvcc` and
  `include/cuda_runtime.h`.
* **Proof after** (`device_code_problems`): every extension module (`*.so`) the build made in the work tree has
  an `.nv_fatbin` ELF section whose fat binary holds a cubin for each target `sm_XY`; a CPU-only build (no
  device code: the silent fallback of a `setup.py` that finds no CUDA) for a GPU hardware group is an error.
  A module the row declares C++-only (`impl.environment.host_only_extensions`, e.g. mmdetection's
  `mmdet/ops/utils/compiling_info`, which only reports the compiler's versions) is exempt; at least one other is not.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from ..rundir import atomic_write_json, now_iso
from .venv import BuildError

#: CUDA X.Y of the framework -> the package-index wheels of a toolkit that compiles against it (measured:
#: ../shared/design-sketch.md, "Third layer"; nvcc and its headers must come from one release)
INDEX_TOOLKITS: dict[str, list[str]] = {
    "13.0": [
        "nvidia-cuda-nvcc==13.0.88",
        "nvidia-cuda-crt==13.0.88",
        "nvidia-nvvm==13.0.88",
        "nvidia-cuda-runtime==13.0.96",
        "nvidia-cuda-cccl==13.0.85",
    ],
}
#: CUDA (from which on) -> the oldest gcc its nvcc accepts (NVIDIA's installation guides); the newest one
#: is read from the toolkit's crt/host_config.h, with _MAX_GCC when that file cannot be read
_MIN_GCC = (((10, 0), 5), ((11, 0), 6), ((12, 0), 6), ((13, 0), 7))
_MAX_GCC = (
    ((10, 1), 8),
    ((11, 0), 9),
    ((11, 1), 10),
    ((11, 4), 11),
    ((12, 0), 12),
    ((12, 4), 13),
    ((12, 8), 14),
    ((13, 0), 15),
)
FATBIN_MAGIC = 0xBA55ED50


class ToolchainError(BuildError):
    """No usable CUDA toolchain, or one that cannot build this row; the message names the way out."""


@dataclasses.dataclass
class Toolkit:
    home: Path
    nvcc: Path
    version: tuple[int, int]
    source: str  # CUDA_HOME | PATH | index | path

    @property
    def version_text(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    def describe(self) -> str:
        return f"CUDA {self.version_text} from {self.source} (CUDA_HOME={self.home})"


def arch_list(compute_capability: str | None) -> list[str]:
    """'9.0' or '8.0;9.0' (or '8.0,9.0') -> ['8.0', '9.0']; None / '' -> [] (a CPU hardware group)."""
    if not compute_capability:
        return []
    out = []
    for part in re.split(r"[;,\s]+", str(compute_capability).strip()):
        if not part:
            continue
        if not re.fullmatch(r"\d+\.\d+", part):
            raise ToolchainError(
                f"hardware.compute_capability={compute_capability!r}: each architecture is X.Y "
                "(7.0 V100, 8.0 A100, 9.0 H100), several separated by ';'"
            )
        out.append(part)
    return sorted(set(out), key=lambda s: tuple(map(int, s.split("."))))


def sm_names(archs: Iterable[str]) -> list[str]:
    return [f"sm_{a.replace('.', '')}" for a in archs]


def _version_of(text: str) -> tuple[int, int] | None:
    m = re.search(r"release (\d+)\.(\d+)", text) or re.match(r"^\s*(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def nvcc_version(nvcc: Path | str) -> tuple[int, int]:
    try:
        out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError as e:
        raise ToolchainError(f"cannot run {nvcc}: {e}") from e
    v = _version_of(out.stdout)
    if out.returncode != 0 or v is None:
        raise ToolchainError(
            f"`{nvcc} --version` did not say its CUDA release (exit {out.returncode}): "
            f"{(out.stdout + out.stderr).strip()[-300:]}"
        )
    return v


def _nvcc_top(nvcc: Path) -> Path | None:
    """The toolkit an nvcc belongs to, as nvcc itself says (a /usr/local/bin/nvcc wrapper has no include/ beside it)."""
    try:
        out = subprocess.run(
            [str(nvcc), "-dryrun", "-c", "x.cu"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError:
        return None
    m = re.search(r"^#\$ TOP=(.+)$", out.stdout + out.stderr, re.MULTILINE)
    return Path(m.group(1).strip()).resolve() if m else None


def _toolkit_at(home: Path, source: str) -> Toolkit:
    nvcc = home / "bin" / "nvcc"
    if not nvcc.exists():
        raise ToolchainError(f"CUDA toolkit {home} (from {source}) has no bin/nvcc")
    return Toolkit(home=home, nvcc=nvcc, version=nvcc_version(nvcc), source=source)


def host_toolkit(env: dict[str, str] | None = None) -> Toolkit | None:
    """$CUDA_HOME (or $CUDA_PATH), else the toolkit of the nvcc on PATH; None when neither is there."""
    env = dict(os.environ if env is None else env)
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if env.get(var):
            return _toolkit_at(Path(env[var]), f"${var}")
    nvcc = shutil.which("nvcc", path=env.get("PATH"))
    if nvcc is None:
        return None
    top = _nvcc_top(Path(nvcc))
    home = top if top is not None and (top / "bin").is_dir() else Path(nvcc).resolve().parent.parent
    return Toolkit(
        home=home,
        nvcc=home / "bin" / "nvcc" if (home / "bin" / "nvcc").exists() else Path(nvcc),
        version=nvcc_version(nvcc),
        source=f"nvcc on PATH ({nvcc})",
    )


def _torch_cuda_libs() -> list[Path]:
    """The CUDA headers and libraries torch's own nvidia-* wheels ship (cuBLAS, cuSPARSE, ... headers ATen includes)."""
    out = []
    for d in map(Path, sys.path):
        nv = d / "nvidia"
        if nv.is_dir():
            out += [p for p in sorted(nv.glob("cu*")) if (p / "include").is_dir()]
    return out


def index_toolkit(cuda: str, cache_dir: str | Path, write: Callable[[str], None]) -> Toolkit:
    """NVIDIA's compiler and headers for CUDA X.Y from the package index, once under cache_dir (see module doc)."""
    key = ".".join(cuda.split(".")[:2])
    wheels = INDEX_TOOLKITS.get(key)
    if wheels is None:
        raise ToolchainError(
            f"no pinned CUDA {key} toolkit on the package index is known to the launcher (known: "
            f"{', '.join(INDEX_TOOLKITS)}): set CUDA_HOME to a CUDA {key} toolkit, or "
            "cuda_toolkit=/path/to/it, and build again"
        )
    root = Path(cache_dir).expanduser().resolve() / "toolchains" / f"cuda-{key}"
    home, site_dir, marker = root / "home", root / "site", root / "launcher-toolkit.json"
    try:
        done = json.loads(marker.read_text(encoding="utf-8")).get("wheels") == wheels
    except (OSError, ValueError):
        done = False
    if not done:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site_dir), *wheels]
        write(
            f"[launcher] toolchain: no CUDA toolkit here; installing CUDA {key} from the package index: {' '.join(cmd)}"
        )
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise ToolchainError(
                f"installing the CUDA {key} toolkit from the package index failed (exit "
                f"{out.returncode}): {(out.stdout + out.stderr).strip()[-1500:]}\nthe build needs "
                "the package index (run it where the network is), or CUDA_HOME set to a toolkit"
            )
        cu = next((p for p in sorted((site_dir / "nvidia").glob("cu*")) if (p / "bin" / "nvcc").exists()), None)
        if cu is None:
            raise ToolchainError(f"the CUDA {key} wheels installed into {site_dir} hold no bin/nvcc")
        for sub in ("include", "lib64"):
            (home / sub).mkdir(parents=True)
        os.symlink(cu / "bin", home / "bin")
        if (cu / "nvvm").is_dir():
            os.symlink(cu / "nvvm", home / "nvvm")
        # the compiler's own headers and libraries win over torch's (same release: torch's add cuBLAS & co)
        for src in [cu] + _torch_cuda_libs():
            for sub, dest in (("include", "include"), ("lib", "lib64")):
                for f in sorted((src / sub).glob("*")) if (src / sub).is_dir() else []:
                    if not (home / dest / f.name).exists():
                        os.symlink(f, home / dest / f.name)
        cudart = sorted((home / "lib64").glob("libcudart.so.*"))
        if cudart and not (home / "lib64" / "libcudart.so").exists():
            os.symlink(cudart[0].name, home / "lib64" / "libcudart.so")
        atomic_write_json(marker, {"wheels": wheels, "home": str(home), "made_at": now_iso()})
        write(f"[launcher] toolchain: CUDA {key} from the package index in {home}")
    return _toolkit_at(home, "index")


def resolve_toolkit(
    choice: str,
    cuda: str | None,
    cache_dir: str | Path,
    write: Callable[[str], None],
    env: dict[str, str] | None = None,
) -> Toolkit:
    """The toolkit a build uses: CHOICE is `auto`, `index` or a toolkit directory (see the module docstring)."""
    choice = str(choice or "auto")
    if choice not in ("auto", "index"):
        return _toolkit_at(Path(choice).expanduser(), "cuda_toolkit")
    if choice == "auto":
        found = host_toolkit(env)
        if found is not None:
            return found
    if not cuda:
        raise ToolchainError(
            "no CUDA toolkit here (no CUDA_HOME, no nvcc on PATH) and the build's torch has no CUDA "
            "(torch.version.cuda is None) to pick one from the package index: install a CUDA build "
            "of torch, or set CUDA_HOME"
        )
    return index_toolkit(cuda, cache_dir, write)


def gcc_range(toolkit: Toolkit) -> tuple[int, int | None]:
    """(oldest, newest) gcc major version this nvcc accepts."""
    v = toolkit.version
    low = max([g for since, g in _MIN_GCC if v >= since] or [5])
    high = None
    for inc in (
        toolkit.home / "include" / "crt" / "host_config.h",
        toolkit.home / "targets" / "x86_64-linux" / "include" / "crt" / "host_config.h",
        toolkit.nvcc.parent / "crt" / "host_config.h",
    ):
        try:
            m = re.search(r"#if\s+__GNUC__\s*>\s*(\d+)", inc.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        if m:
            high = int(m.group(1))
            break
    if high is None:
        high = max([g for since, g in _MAX_GCC if v >= since] or [0]) or None
    return low, high


def host_compiler(env: dict[str, str] | None = None) -> tuple[str, tuple[int, ...] | None, str]:
    """(the C++ compiler nvcc will call, its version, its name: gcc | clang | ...)."""
    env = dict(os.environ if env is None else env)
    cxx = env.get("CXX") or "c++"
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60, env=env, check=False)
        ver = subprocess.run(
            [cxx, "-dumpfullversion", "-dumpversion"], capture_output=True, text=True, timeout=60, env=env, check=False
        )
    except OSError:
        return cxx, None, "missing"
    kind = "clang" if "clang" in out.stdout.lower() else "gcc" if out.returncode == 0 else "missing"
    m = re.match(r"(\d+)(?:\.(\d+))?", ver.stdout.strip())
    return cxx, (tuple(int(g) for g in m.groups() if g) if m else None), kind


def toolchain_problems(
    toolkit: Toolkit, framework_cuda_version: str | None, compiler: tuple[str, tuple[int, ...] | None, str]
) -> list[str]:
    """What stops TOOLKIT from building a CUDA extension for the framework (empty: go ahead)."""
    problems = []
    if (
        not (toolkit.home / "include" / "cuda_runtime.h").exists()
        and not (toolkit.home / "targets" / "x86_64-linux" / "include" / "cuda_runtime.h").exists()
    ):
        problems.append(
            f"CUDA_HOME={toolkit.home} has no include/cuda_runtime.h: point CUDA_HOME at a whole toolkit "
            "(or unset it: the launcher then takes one from the package index)"
        )
    fw = _version_of(framework_cuda_version or "")
    if fw is None:
        problems.append(
            "the build's torch has no CUDA (torch.version.cuda is None): a GPU build needs a CUDA build of torch"
        )
    elif fw[0] != toolkit.version[0]:
        problems.append(
            f"nvcc is CUDA {toolkit.version_text} ({toolkit.source}) and torch was built with CUDA "
            f"{framework_cuda_version}: extensions must be compiled by the same CUDA major version; set "
            f"CUDA_HOME to a CUDA {fw[0]}.{fw[1]} toolkit (or cuda_toolkit=index)"
        )
    cxx, version, kind = compiler
    low, high = gcc_range(toolkit)
    if kind == "missing" or version is None:
        problems.append(
            f"no host C++ compiler ({cxx}) found: nvcc needs gcc {low}-{high or '?'}; install one or set CXX"
        )
    elif kind == "gcc" and (version[0] < low or (high is not None and version[0] > high)):
        problems.append(
            f"the host compiler {cxx} is gcc {'.'.join(map(str, version))} and CUDA "
            f"{toolkit.version_text}'s nvcc accepts gcc {low} to {high}: load a gcc in that range (e.g. "
            f"`module load gcc/{high}`) and set CXX/CC to it, or use a CUDA that supports this gcc"
        )
    return problems


def build_environ(toolkit: Toolkit, archs: list[str], jobs: int | None = None) -> dict[str, str]:
    """Variables a torch cpp_extension build needs to compile device code without a GPU."""
    env = {
        "CUDA_HOME": str(toolkit.home),
        "CUDA_PATH": str(toolkit.home),
        "FORCE_CUDA": "1",
        "TORCH_CUDA_ARCH_LIST": ";".join(archs),
        "PATH": f"{toolkit.home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    if jobs:
        env["MAX_JOBS"] = str(jobs)
    return env


# ---- proof of device code ------------------------------------------------------------------------------


def _elf_sections(data: bytes) -> dict[str, bytes]:
    """Section name -> contents of a 64-bit little-endian ELF file (what extension modules are)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return {}
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    heads = []
    for i in range(shnum):
        off = shoff + i * shentsize
        name, typ, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, off)
        heads.append((name, typ, offset, size))
    if not heads or shstrndx >= len(heads):
        return {}
    _, _, stroff, strsize = heads[shstrndx]
    names = data[stroff : stroff + strsize]
    out = {}
    for name, typ, offset, size in heads:
        label = names[name : names.index(b"\0", name)].decode("ascii", "replace")
        out[label] = b"" if typ == 8 else data[offset : offset + size]  # SHT_NOBITS holds nothing in the file
    return out


def fatbin_archs(blob: bytes) -> dict[str, set[int]]:
    """{'elf': {80, 90}, 'ptx': {...}}: the SM versions of the cubins / PTX in a `.nv_fatbin` section (one or
    more fat binaries back to back: header magic 0xBA55ED50, then entries of kind 1 PTX / 2 ELF)."""
    found: dict[str, set[int]] = {"elf": set(), "ptx": set()}
    pos = 0
    while pos + 16 <= len(blob):
        magic, _ver, hsize, fsize = struct.unpack_from("<IHHQ", blob, pos)
        if magic != FATBIN_MAGIC:
            nxt = blob.find(struct.pack("<I", FATBIN_MAGIC), pos + 1)  # alignment padding between binaries
            if nxt < 0:
                break
            pos = nxt
            continue
        entry, end = pos + hsize, pos + hsize + fsize
        while entry + 64 <= end:
            kind, _v, ehsize, padded = struct.unpack_from("<HHII", blob, entry)
            (sm,) = struct.unpack_from("<I", blob, entry + 28)
            if kind in (1, 2):
                found["ptx" if kind == 1 else "elf"].add(sm)
            if ehsize == 0:
                break
            entry += ehsize + padded
        pos = max(end, pos + 16)
    return found


def extension_modules(tree: Path) -> list[Path]:
    """The compiled extension modules a build left in the work tree (not in .git or a build/ directory)."""
    out = []
    for p in sorted(Path(tree).rglob("*.so")):
        rel = p.relative_to(tree).parts
        if rel and rel[0] in (".git", "build") or p.is_symlink():
            continue
        out.append(p)
    return out


def device_code(path: Path) -> dict[str, set[int]]:
    return fatbin_archs(_elf_sections(Path(path).read_bytes()).get(".nv_fatbin", b""))


def _module_name(rel: Path) -> str:
    """mmdet/ops/utils/compiling_info.cpython-311-x86_64-linux-gnu.so -> mmdet/ops/utils/compiling_info."""
    return str(rel.parent / rel.name.split(".", 1)[0])


def device_code_problems(
    tree: Path, archs: list[str], host_only: list[str] | tuple[str, ...] = ()
) -> tuple[list[str], dict[str, list[str]]]:
    """(problems, {module: [sm_XY, ...]}) for the extension modules built in TREE against the target ARCHS.
    HOST_ONLY names the modules the row declares as C++ only (`host_only_extensions`): reported, not required to
    hold device code; every other module is, and at least one must."""
    wanted = {int(a.replace(".", "")) for a in archs}
    mods = extension_modules(tree)
    if not mods:
        return [f"the build made no extension module (*.so) in {tree}: nothing compiled"], {}
    report, problems = {}, []
    for m in mods:
        code = device_code(m)
        have = code["elf"]
        report[str(m.relative_to(tree))] = [f"sm_{s}" for s in sorted(have)]
        rel = m.relative_to(tree)
        if _module_name(rel) in host_only:
            continue
        if not have and not code["ptx"]:
            problems.append(
                f"{rel} holds no device code (no .nv_fatbin section): a CPU-only build for a GPU hardware "
                "group (its setup.py found no CUDA); the first GPU op would fail with 'Not compiled with "
                "GPU support'"
            )
        elif wanted - have:
            problems.append(
                f"{rel} has device code for {', '.join(f'sm_{s}' for s in sorted(have)) or 'no cubin'}, "
                f"not for {', '.join(f'sm_{s}' for s in sorted(wanted - have))}"
            )
    if not problems and all(_module_name(m.relative_to(tree)) in host_only for m in mods):
        problems.append(f"every extension module in {tree} is declared host-only: no device code was built")
    return problems, report
