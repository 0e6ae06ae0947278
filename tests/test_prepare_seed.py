"""The seed rows' recipes as data: their patch files and environment recipes exist, the matterport
diff is a well-formed unified diff carrying the seed's settings, and the maskrcnn-benchmark patches
reach every file they are meant to (layout modelled on the repository at 0ce8f6f) and no other."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from launcher import CONF_DIR, JOBS_DIR
from launcher.prepare import prepare
from launcher.spec import JobSpec

ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
    "LC_ALL": "C",
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": os.environ.get("HOME", "/tmp"),
}


def sh(*args, cwd) -> str:
    return subprocess.run(args, cwd=cwd, env=ENV, check=True, capture_output=True, text=True).stdout.strip()


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


ROWS = sorted(p.stem for p in (CONF_DIR / "impl").glob("*.yaml"))
DIFF = JOBS_DIR / "matterport" / "hyperparams.diff"


@pytest.mark.parametrize("row", ROWS)
def test_row_recipe_files_exist(row):
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "impl" / f"{row}.yaml"), resolve=False)
    for p in cfg.get("patches") or []:
        assert p.get("kind", "diff") in ("diff", "replace"), p
        if p.get("kind", "diff") == "diff":
            assert (JOBS_DIR / row / p["file"]).is_file(), p
        else:
            assert p.get("glob") and p.get("old") and p.get("new") is not None, p
    recipe = (cfg.get("environment") or {}).get("recipe")
    if recipe:
        assert (JOBS_DIR / row / recipe).is_file(), f"jobs/{row}/{recipe}"
    if cfg.get("repo"):
        assert cfg.get("commit"), row
        assert recipe, f"{row}: a seed row describes its 2020 stack in a build recipe under jobs/{row}/"


def _preimages(diff_text: str) -> dict[str, list[str]]:
    """Synthetic files holding each hunk's old lines at the hunk's line numbers (filler elsewhere)."""
    files: dict[str, dict[int, str]] = {}
    current, lineno = None, 0
    for line in diff_text.splitlines():
        if line.startswith("--- "):
            continue
        if line.startswith("+++ "):
            current = line[4:].split("/", 1)[1]
            files[current] = {}
        elif line.startswith("@@"):
            lineno = int(re.match(r"@@ -(\d+)", line).group(1))
        elif current and line[:1] in (" ", "-"):
            files[current][lineno] = line[1:]
            lineno += 1
    out = {}
    for name, lines in files.items():
        n = max(lines) + 5
        out[name] = [lines.get(i, f"# filler line {i}") for i in range(1, n + 1)]
    return out


def test_matterport_diff_is_well_formed_and_carries_the_seed_settings(tmp_path):
    text = DIFF.read_text()
    assert set(re.findall(r"^\+\+\+ w/(\S+)", text, re.M)) == {
        "mrcnn/model.py",
        "mrcnn/parallel_model.py",
        "samples/coco/coco.py",
    }
    # the seed page's hunk headers and index lines, kept
    for header in ("@@ -2367,8 +2367,8 @@", "@@ -32,6 +32,7 @@", "@@ -81,7 +81,10 @@", "@@ -496,29 +499,10 @@"):
        assert header in text
    for index in ("62cb2b0..61d7779", "d2bf53b..060172a", "5d172b5..239ed75"):
        assert f"index {index} 100644" in text
    added = [line[1:].strip() for line in text.splitlines() if line.startswith("+") and not line.startswith("+++")]
    for setting in (
        "GPU_COUNT = 8",
        'BACKBONE = "resnet50"',
        "STEPS_PER_EPOCH = 50",
        "TRAIN_ROIS_PER_IMAGE = 512",
        "layers='3+',",
        "#validation_data=val_generator,",
        "#validation_steps=self.config.VALIDATION_STEPS,",
        "super().__init__()",
    ):
        assert setting in added, setting
    repo = tmp_path / "mm"
    repo.mkdir()
    sh("git", "init", "-q", cwd=repo)
    write(repo, {name: "\n".join(lines) + "\n" for name, lines in _preimages(text).items()})
    r = subprocess.run(["git", "apply", "--check", "-v", str(DIFF)], cwd=repo, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    subprocess.run(["git", "apply", str(DIFF)], cwd=repo, env=ENV, check=True)
    coco = (repo / "samples/coco/coco.py").read_text()
    assert "layers='heads'" not in coco and "layers='4+'" not in coco and "layers='all'" not in coco
    assert coco.count("model.train(") == 1


def test_maskrcnn_benchmark_patches_reach_every_intended_file(tmp_path):
    cfg = OmegaConf.load(CONF_DIR / "impl" / "maskrcnn_benchmark.yaml")
    patches = OmegaConf.to_container(cfg.patches)
    src = tmp_path / "mrb"
    src.mkdir()
    sh("git", "init", "-q", cwd=src)
    files = {  # paths as at 0ce8f6f
        "demo/predictor.py": "m = m.to(torch.uint8)\n",
        "maskrcnn_benchmark/modeling/balanced_positive_negative_sampler.py": "torch.uint8\ntorch.uint8\n",
        "maskrcnn_benchmark/modeling/roi_heads/keypoint_head/loss.py": "dtype=torch.uint8\n",
        "maskrcnn_benchmark/csrc/cuda/deform_conv_cuda.cu": "AT_CHECK(a);\nAT_CHECK(b);\n",
        "maskrcnn_benchmark/csrc/cuda/deform_pool_cuda.cu": "AT_CHECK(c);\n",
        "maskrcnn_benchmark/csrc/cpu/nms_cpu.cpp": "AT_CHECK(d);\n",  # hypothetical: .cpp is out of the seed's scope
        "demo/shapes_dataset_demo.ipynb": '{"src": "torch.uint8"}\n',
    }
    write(src, files)
    sh("git", "add", "-A", cwd=src)
    sh("git", "commit", "-q", "-m", "layout of 0ce8f6f", cwd=src)
    spec = JobSpec(
        impl="maskrcnn_benchmark",
        label="m",
        title="m",
        framework="PyTorch",
        command="true",
        images_per_iter=16,
        window=[100, 500],
        log_format="maskrcnn_benchmark",
        repo=str(src),
        commit="HEAD",
        patches=patches,
    )
    t = Path(prepare(spec, tmp_path / "cache").checkout_dir)
    assert (t / "demo/predictor.py").read_text() == "m = m.to(torch.bool)\n"
    assert (t / "maskrcnn_benchmark/modeling/roi_heads/keypoint_head/loss.py").read_text() == "dtype=torch.bool\n"
    assert (t / "maskrcnn_benchmark/csrc/cuda/deform_conv_cuda.cu").read_text() == "TORCH_CHECK(a);\nTORCH_CHECK(b);\n"
    assert (t / "maskrcnn_benchmark/csrc/cpu/nms_cpu.cpp").read_text() == files[
        "maskrcnn_benchmark/csrc/cpu/nms_cpu.cpp"
    ]
    assert (t / "demo/shapes_dataset_demo.ipynb").read_text() == files["demo/shapes_dataset_demo.ipynb"]
