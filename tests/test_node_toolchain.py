"""The CUDA toolchain of compiled builds (launcher/node/toolchain.py, compiled.py): NVIDIA's compiler from the
package index when the host has none, the checks before any compiler runs, the proof of device code after,
and a node that never builds: a missing or stale build fails before the command, naming the command that
makes it.  Real compilers and real ELF files throughout (no GPU needed)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest

from launcher.node.run import run_node
from launcher.node.build import build_once, marker_path
from launcher.node.compiled import _seed_checks, built_problems, make_command
from launcher.node.toolchain import (
    INDEX_TOOLKITS,
    ToolchainError,
    Toolkit,
    arch_list,
    device_code,
    device_code_problems,
    gcc_range,
    host_toolkit,
    index_toolkit,
    resolve_toolkit,
    toolchain_problems,
)
from launcher.rundir import read_result
from tests.test_stack import managed_spec

KERNEL = "__global__ void add(float* x) { x[threadIdx.x] += 1.0f; }\n"


def torch_cuda() -> str | None:
    import torch

    return torch.version.cuda


@pytest.fixture(scope="session")
def index_cuda(tmp_path_factory) -> Toolkit:
    """NVIDIA's compiler and headers for this torch's CUDA, from the package index (as a login node without a
    CUDA toolkit gets them), in a cache of the session."""
    cuda = torch_cuda()
    if not cuda:
        pytest.skip("this torch is a CPU build: no CUDA version to match a toolkit to")
    if ".".join(cuda.split(".")[:2]) not in INDEX_TOOLKITS:
        pytest.skip(f"no pinned index toolkit for CUDA {cuda}")
    lines: list[str] = []
    return index_toolkit(cuda, tmp_path_factory.mktemp("cache"), lines.append)


def compile_kernel(toolkit: Toolkit, where: Path, archs: list[str]) -> Path:
    """A tiny CUDA kernel compiled for ARCHS and linked into a shared object (an extension module's shape)."""
    (where / "k.cu").write_text(KERNEL)
    gencode = [f"-gencode=arch=compute_{a.replace('.', '')},code=sm_{a.replace('.', '')}" for a in archs]
    subprocess.run(
        [str(toolkit.nvcc), "-c", "-Xcompiler", "-fPIC", *gencode, "k.cu", "-o", "k.o"],
        cwd=where,
        check=True,
        capture_output=True,
        timeout=600,
    )
    subprocess.run(["c++", "-shared", "k.o", "-o", "k_ext.so"], cwd=where, check=True, capture_output=True)
    return where / "k_ext.so"


def cpu_extension(where: Path) -> Path:
    (where / "c.c").write_text("int f(void) { return 1; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "c.c", "-o", "_C.so"], cwd=where, check=True, capture_output=True)
    return where / "_C.so"


# ---------------------------------------------------------------- the toolkit from the package index


def test_the_index_toolkit_matches_torch_and_compiles_device_code_for_sm80_and_sm90(index_cuda, tmp_path):
    assert index_cuda.source == "index" and (index_cuda.home / "include" / "cuda_runtime.h").exists()
    assert index_cuda.version_text == ".".join(torch_cuda().split(".")[:2])  # the wheels are pinned to torch's CUDA
    # torch's own CUDA headers (cuBLAS, ... that ATen's CUDA headers include) are in the same include/
    assert (index_cuda.home / "include" / "cublas_v2.h").exists() and (
        index_cuda.home / "lib64" / "libcudart.so"
    ).exists()
    so = compile_kernel(index_cuda, tmp_path, ["8.0", "9.0"])
    assert device_code(so)["elf"] == {80, 90}
    assert device_code_problems(tmp_path, ["8.0", "9.0"]) == ([], {"k_ext.so": ["sm_80", "sm_90"]})
    problems, _ = device_code_problems(tmp_path, ["7.0", "9.0"])
    assert problems == ["k_ext.so has device code for sm_80, sm_90, not for sm_70"]
    # a C++-only module beside it (mmdetection's compiling_info): an error unless the row declares it host-only
    (tmp_path / "utils").mkdir()
    cpu_extension(tmp_path / "utils").rename(tmp_path / "utils" / "info.cpython-311-x86_64-linux-gnu.so")
    assert device_code_problems(tmp_path, ["8.0", "9.0"])[0][0].startswith("utils/info.cpython-311")
    assert device_code_problems(tmp_path, ["8.0", "9.0"], ["utils/info"])[0] == []
    # nothing here checks the compiler's gcc range twice: the index's nvcc accepts this machine's gcc
    assert toolchain_problems(index_cuda, torch_cuda(), ("c++", (12, 2), "gcc")) == []


def test_auto_takes_cuda_home_then_the_nvcc_on_path_then_the_index(index_cuda, tmp_path):
    lines: list[str] = []
    # a login node with neither CUDA_HOME nor nvcc: the index's (already in this cache: no second install)
    bare = {"PATH": "/usr/bin:/bin"}
    got = resolve_toolkit("auto", torch_cuda(), index_cuda.home.parent.parent.parent, lines.append, bare)
    assert got.source == "index" and got.home == index_cuda.home and lines == []
    assert host_toolkit(bare) is None
    # CUDA_HOME wins
    assert (
        resolve_toolkit(
            "auto", torch_cuda(), tmp_path, lines.append, {**bare, "CUDA_HOME": str(index_cuda.home)}
        ).source
        == "$CUDA_HOME"
    )
    # an nvcc on PATH: its toolkit is where nvcc says it lives (TOP=), not the wrapper's directory
    found = host_toolkit({"PATH": f"{index_cuda.home / 'bin'}:/usr/bin:/bin"})
    assert found is not None and found.source.startswith("nvcc on PATH") and found.version == index_cuda.version
    # a toolkit directory that is not one is refused by name
    with pytest.raises(ToolchainError, match="has no bin/nvcc"):
        resolve_toolkit(str(tmp_path), torch_cuda(), tmp_path, lines.append, bare)


def test_no_pinned_toolkit_for_an_unknown_cuda_says_how_to_go_on(tmp_path):
    with pytest.raises(ToolchainError, match=r"no pinned CUDA 9.9 toolkit .* set CUDA_HOME"):
        index_toolkit("9.9", tmp_path, print)
    assert not (tmp_path / "toolchains").exists()


# ---------------------------------------------------------------- checks before the compiler


def test_toolchain_checks_name_a_cuda_mismatch_a_gcc_out_of_range_and_a_partial_cuda_home(tmp_path):
    home = tmp_path / "cuda"
    (home / "bin").mkdir(parents=True)
    (home / "include" / "crt").mkdir(parents=True)
    (home / "include" / "crt" / "host_config.h").write_text("#if __GNUC__ > 13\n#error unsupported GNU version\n")
    tk = Toolkit(home=home, nvcc=home / "bin" / "nvcc", version=(12, 4), source="$CUDA_HOME")
    assert gcc_range(tk) == (6, 13)  # the newest from the toolkit's own header
    problems = toolchain_problems(tk, "13.0", ("g++", (14, 1), "gcc"))
    assert any("has no include/cuda_runtime.h" in p for p in problems)
    assert any("nvcc is CUDA 12.4" in p and "torch was built with CUDA 13.0" in p for p in problems)
    assert any("gcc 14.1" in p and "accepts gcc 6 to 13" in p for p in problems)
    (home / "include" / "cuda_runtime.h").write_text("")
    assert toolchain_problems(tk, "12.8", ("g++", (13, 2), "gcc")) == []
    assert "has no CUDA" in toolchain_problems(tk, None, ("g++", (13, 2), "gcc"))[0]


def test_the_seed_stacks_cuda_10_1_needs_gcc_5_to_8_and_says_so_before_compiling(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 10.1, V10.1.243'\n")
    (bin_dir / "gcc12").write_text("#!/bin/sh\necho 12.2.0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    spec = dataclasses.replace(
        managed_spec(tmp_path),
        environment={"kind": "host", "cuda_extensions": True, "software": {"cuda": "10.1"}},
        compute_capability="7.0",
    )
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CXX": str(bin_dir / "gcc12")}
    with pytest.raises(ToolchainError, match=r"gcc 12.2.0 and CUDA 10.1's nvcc accepts gcc 5 to 8"):
        _seed_checks(spec, env, ["7.0"], print)
    (bin_dir / "gcc8").write_text("#!/bin/sh\necho 8.4.0\n")
    (bin_dir / "gcc8").chmod(0o755)
    env["CXX"] = str(bin_dir / "gcc8")
    assert _seed_checks(spec, env, ["7.0"], print)["cuda"] == "10.1" and env["TORCH_CUDA_ARCH_LIST"] == "7.0"


def test_arch_lists():
    assert arch_list("9.0") == ["9.0"] and arch_list("9.0;8.0") == ["8.0", "9.0"] and arch_list(None) == []
    with pytest.raises(ToolchainError, match="each architecture is X.Y"):
        arch_list("sm_90")


# ---------------------------------------------------------------- proof after the build


def test_a_cpu_only_extension_for_a_gpu_group_is_an_error_never_a_marker(tmp_path):
    """A build step that makes a CPU-only `_C` (what detectron2's setup.py does silently without CUDA):
    the build fails, no marker is written, and the node then refuses to run it."""
    from launcher.node.compiled import after_build

    s = managed_spec(tmp_path, compute_capability="9.0", hardware="h100x8")
    s.environment["cuda_extensions"] = True
    cpu_extension(Path(s.checkout_dir))
    lines: list[str] = []
    with pytest.raises(ToolchainError, match=r"_C.so holds no device code .* CPU-only build for a GPU hardware group"):
        after_build(s, lines.append)


def test_a_declared_host_only_module_is_exempt_and_the_others_are_not(tmp_path):
    """`impl.environment.host_only_extensions`: a module built from C++ alone (mmdetection's
    mmdet/ops/utils/compiling_info) holds no device code by design; it is reported, not an error, while an
    undeclared CPU-only module still is, and a build whose every module is declared host-only is one too."""
    from launcher.node.compiled import after_build

    s = managed_spec(tmp_path, compute_capability="9.0", hardware="h100x8")
    s.environment["cuda_extensions"] = True
    tree = Path(s.checkout_dir)
    (tree / "pkg" / "utils").mkdir(parents=True)
    cpu_extension(tree / "pkg" / "utils").rename(
        tree / "pkg" / "utils" / "compiling_info.cpython-311-x86_64-linux-gnu.so"
    )
    cpu_extension(tree / "pkg")
    s.environment["host_only_extensions"] = ["pkg/utils/compiling_info"]
    lines: list[str] = []
    with pytest.raises(ToolchainError) as e:
        after_build(s, lines.append)
    assert "pkg/_C.so holds no device code" in str(e.value) and "compiling_info" not in str(e.value)
    assert "[launcher] device code: pkg/utils/compiling_info.cpython-311-x86_64-linux-gnu.so: none" in lines
    (tree / "pkg" / "_C.so").unlink()
    with pytest.raises(ToolchainError, match=r"every extension module in .* is declared host-only"):
        after_build(s, lines.append)


# ---------------------------------------------------------------- the node never builds


def test_the_node_refuses_a_missing_or_stale_build_naming_the_command_that_makes_it(tmp_path):
    s = managed_spec(tmp_path, command="echo ran > ran.txt", stack="today", hardware="local")
    run = Path(s.run_dir)
    run.mkdir(parents=True)
    s.save()
    r = run_node(run)
    assert r.status == "failed" and r.error.startswith("not built: the row's environment")
    assert "is missing: the node installs nothing" in r.error and make_command(s) in r.error
    assert "prepare_only=true" in make_command(s) and f"cache_dir={tmp_path / 'cache'}" in make_command(s)
    assert not (Path(s.checkout_dir) / "ran.txt").exists()  # the command never started
    assert not (tmp_path / "cache" / "envs").exists()  # and nothing was installed on the node
    # built where the network is: the node runs it
    assert build_once(s, print) is True
    assert built_problems(s) is None
    assert run_node(run).status in ("ok", "failed")  # (the toy command writes no log: what matters is it ran)
    assert (Path(s.checkout_dir) / "ran.txt").exists()
    # a build made against another torch is stale
    data = json.loads(marker_path(s).read_text())
    data["torch"] = "1.5.0"
    marker_path(s).write_text(json.dumps(data))
    assert "was built against torch 1.5.0" in built_problems(s)
    # and a build for the CPU is not one for H100s
    data["torch"], data["archs"] = None, []
    marker_path(s).write_text(json.dumps(data))
    gpu = dataclasses.replace(
        s, compute_capability="9.0", hardware="h100x8", environment={**s.environment, "cuda_extensions": True}
    )
    assert "was built for CPU and hardware h100x8 needs ['9.0']" in built_problems(gpu)


def test_a_submission_builds_first_and_a_failed_build_is_a_failed_row(tmp_path):
    """prepare_only=true and a run alike make the managed venv and run the build on the submit host."""
    from tests.conftest import run_launcher

    repo = tmp_path / "toyrepo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "setup.py").write_text("print('building')\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], check=True
    )
    common = [
        "impl=torchvision",
        f"impl.repo={repo}",
        "impl.commit=HEAD",
        "stack=seed",
        "impl.environment.kind=venv",
        "impl.environment.managed=true",
        f"cache_dir={tmp_path / 'cache'}",
        "hardware.gpus=0",
        "impl.min_gpus=0",
    ]
    p = run_launcher(*common, "impl.build=[python setup.py]", "prepare_only=true", cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "[launcher] venv: made" in p.stdout and "building" in p.stdout and "build: done in" in p.stdout
    f = run_launcher(*common, "impl.build=[exit 7]", cwd=tmp_path, timeout=300)
    assert f.returncode != 0 and "prepare failed: build step 1/1 `exit 7` failed (exit 7)" in f.stderr
    (res,) = list((tmp_path / "outputs").rglob("result.json"))
    assert read_result(res).status == "failed" and not list((tmp_path / "outputs").rglob("train.log"))
