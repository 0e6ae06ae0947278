"""The prepare stage against real git repositories made by the tests (no network): checkout by tag,
full and abbreviated hash; patches; idempotence and warm reuse; failures; cache recovery."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from launcher.prepare import CommitNotFound, PatchError, prepare, tree_state
from launcher.spec import JobSpec

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
    "LC_ALL": "C",
}


def sh(*args, cwd) -> str:
    return subprocess.run(args, cwd=cwd, env=ENV, check=True, capture_output=True, text=True).stdout.strip()


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


FILES_V1 = {
    "train.py": "mask = x.to(torch.uint8)\n",
    "pkg/model.py": "a = torch.uint8\nb = torch.uint8  # twice\n",
    "pkg/sub/deep/ops.py": "dtype=torch.uint8\n",
    "pkg/regexish.py": "keep = 'torchXuint8'\n",  # sed's `.` would match X; the literal patch must not
    "csrc/cuda/kernel.cu": 'AT_CHECK(x.is_cuda(), "x");\n',
    "csrc/deep/er/more.cu": "AT_CHECK(y);\nAT_CHECK(z);\n",
    "csrc/cpu/host.cpp": "AT_CHECK(x.is_cpu());\n",  # not a .cu file: left alone
    "README.md": "uses torch.uint8 masks\n",  # not a .py file: left alone
    "samples/coco/coco.py": "    IMAGES_PER_GPU = 2\n\n    # Uncomment to train on 8 GPUs (default is 1)\n    # GPU_COUNT = 8\n\n    NUM_CLASSES = 1 + 80\n",
}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory) -> dict:
    """An upstream repository with history, an annotated and a lightweight tag."""
    root = tmp_path_factory.mktemp("upstream") / "toy.git-src"
    root.mkdir()
    sh("git", "init", "-q", "-b", "main", cwd=root)
    write(root, FILES_V1)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-q", "-m", "v1", cwd=root)
    sh("git", "tag", "-a", "v0.1", "-m", "release 0.1", cwd=root)
    v1 = sh("git", "rev-parse", "HEAD", cwd=root)
    write(root, {"train.py": "mask = x.to(torch.uint8)  # v2\n", "NEW.txt": "added in v2\n"})
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-q", "-m", "v2", cwd=root)
    sh("git", "tag", "v0.2", cwd=root)
    v2 = sh("git", "rev-parse", "HEAD", cwd=root)
    return {"path": root, "v1": v1, "v2": v2}


def make_spec(repo, commit, patches=(), **kw) -> JobSpec:
    base = dict(
        impl="toy",
        label="toy",
        title="toy",
        framework="PyTorch",
        command="python train.py",
        images_per_iter=2,
        window=[1, 4],
        log_format="torchvision",
        repo=str(repo) if repo else None,
        commit=commit,
        patches=list(patches),
    )
    base.update(kw)
    return JobSpec(**base)


UINT8 = {"name": "uint8-to-bool", "kind": "replace", "glob": "**/*.py", "old": "torch.uint8", "new": "torch.bool"}
ATCHECK = {"name": "at-check", "kind": "replace", "glob": "**/*.cu", "old": "AT_CHECK", "new": "TORCH_CHECK"}

GOOD_DIFF = """diff --git i/samples/coco/coco.py w/samples/coco/coco.py
--- i/samples/coco/coco.py
+++ w/samples/coco/coco.py
@@ -1,6 +1,7 @@
     IMAGES_PER_GPU = 2
 
     # Uncomment to train on 8 GPUs (default is 1)
-    # GPU_COUNT = 8
+    GPU_COUNT = 8
+    BACKBONE = "resnet50"
 
     NUM_CLASSES = 1 + 80
"""

BAD_DIFF = GOOD_DIFF.replace("    IMAGES_PER_GPU = 2\n", "    IMAGES_PER_GPU = 4\n")


@pytest.fixture
def jobs(tmp_path) -> Path:
    d = tmp_path / "jobs"
    (d / "toy").mkdir(parents=True)
    (d / "toy" / "good.diff").write_text(GOOD_DIFF)
    (d / "toy" / "bad.diff").write_text(BAD_DIFF)
    return d


def test_checkout_by_annotated_tag_lightweight_tag_full_and_abbreviated_hash(upstream, tmp_path, jobs):
    cache = tmp_path / "cache"
    for commit, want in [("v0.1", "v1"), ("v0.2", "v2"), (upstream["v1"], "v1"), (upstream["v2"][:7], "v2")]:
        out = prepare(make_spec(upstream["path"], commit), cache, jobs_dir=jobs)
        assert out.commit_full == upstream[want], commit
        tree = Path(out.checkout_dir)
        assert sh("git", "rev-parse", "HEAD", cwd=tree) == upstream[want]
        assert (tree / "NEW.txt").exists() == (want == "v2")
        assert out.recipe_hash and len(out.recipe_hash) == 64
    # one shared clone for the repository, one tree per recipe (v0.1 and the full v1 hash are one recipe)
    assert len(list((cache / "repos").glob("*.git"))) == 1
    assert len([p for p in (cache / "trees").iterdir() if not p.name.startswith(".")]) == 2


def test_replace_patches_apply_everywhere_meant_and_nowhere_else(upstream, tmp_path, jobs):
    out = prepare(make_spec(upstream["path"], "v0.1", [UINT8, ATCHECK]), tmp_path / "c", jobs_dir=jobs)
    t = Path(out.checkout_dir)
    assert (t / "train.py").read_text() == "mask = x.to(torch.bool)\n"
    assert (t / "pkg/model.py").read_text() == "a = torch.bool\nb = torch.bool  # twice\n"
    assert (t / "pkg/sub/deep/ops.py").read_text() == "dtype=torch.bool\n"  # depth 3: the seed's intent
    assert (t / "samples/coco/coco.py").read_text() == FILES_V1["samples/coco/coco.py"]
    assert (t / "csrc/cuda/kernel.cu").read_text().startswith("TORCH_CHECK(")
    assert (t / "csrc/deep/er/more.cu").read_text() == "TORCH_CHECK(y);\nTORCH_CHECK(z);\n"
    # nowhere else: other extensions, and text that a regex `torch.uint8` would have matched
    assert (t / "csrc/cpu/host.cpp").read_text() == FILES_V1["csrc/cpu/host.cpp"]
    assert (t / "README.md").read_text() == FILES_V1["README.md"]
    assert (t / "pkg/regexish.py").read_text() == FILES_V1["pkg/regexish.py"]
    marker = json.loads((t / ".git" / "launcher-prepared.json").read_text())
    assert marker["patches"][0]["files"] == {"pkg/model.py": 2, "pkg/sub/deep/ops.py": 1, "train.py": 1}
    assert marker["patches"][1]["files"] == {"csrc/cuda/kernel.cu": 1, "csrc/deep/er/more.cu": 2}
    # the patched state is staged on top of the upstream commit, which stays HEAD
    assert sh("git", "rev-parse", "HEAD", cwd=t) == upstream["v1"]
    assert set(sh("git", "diff", "--cached", "--name-only", cwd=t).split()) == {
        "train.py",
        "pkg/model.py",
        "pkg/sub/deep/ops.py",
        "csrc/cuda/kernel.cu",
        "csrc/deep/er/more.cu",
    }


def test_diff_patch_applies_and_warm_prepare_reuses_tree_quickly(upstream, tmp_path, jobs):
    spec = make_spec(upstream["path"], "v0.1", [{"name": "hp", "kind": "diff", "file": "good.diff"}])
    first = prepare(spec, tmp_path / "c", jobs_dir=jobs)
    t = Path(first.checkout_dir)
    assert 'GPU_COUNT = 8\n    BACKBONE = "resnet50"' in (t / "samples/coco/coco.py").read_text()
    marker = t / ".git" / "launcher-prepared.json"
    stamp = marker.stat().st_mtime_ns
    t0 = time.perf_counter()
    second = prepare(spec, tmp_path / "c", jobs_dir=jobs)
    warm = time.perf_counter() - t0
    assert second.checkout_dir == first.checkout_dir and second.recipe_hash == first.recipe_hash
    assert warm < 0.5, f"warm prepare took {warm:.3f} s"
    assert marker.stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_prepare_is_idempotent_even_for_a_replacement_containing_its_old_text(upstream, tmp_path, jobs):
    grow = {"name": "grow", "kind": "replace", "glob": "**/*.py", "old": "torch.uint8", "new": "torch.uint8_t"}
    spec = make_spec(upstream["path"], "v0.1", [grow])
    for _ in range(3):
        out = prepare(spec, tmp_path / "c", jobs_dir=jobs)
    assert (Path(out.checkout_dir) / "train.py").read_text() == "mask = x.to(torch.uint8_t)\n"


def test_a_diff_that_does_not_apply_names_patch_file_and_hunk_and_leaves_no_tree(upstream, tmp_path, jobs):
    cache = tmp_path / "c"
    spec = make_spec(upstream["path"], "v0.1", [UINT8, {"name": "hyperparams", "kind": "diff", "file": "bad.diff"}])
    with pytest.raises(PatchError) as err:
        prepare(spec, cache, jobs_dir=jobs)
    msg = str(err.value)
    assert "hyperparams" in msg and "bad.diff" in msg
    assert "samples/coco/coco.py" in msg and "@@ -1,6 +1,7 @@" in msg
    assert not (cache / "trees").exists() or list((cache / "trees").iterdir()) == []  # half-applied tree gone
    with pytest.raises(PatchError, match=r"no file matching '\*\*/\*\.rs' contains 'AT_CHECK'"):
        prepare(make_spec(upstream["path"], "v0.1", [dict(ATCHECK, glob="**/*.rs")]), cache, jobs_dir=jobs)
    with pytest.raises(PatchError, match="missing.diff does not exist"):
        prepare(
            make_spec(upstream["path"], "v0.1", [{"name": "m", "kind": "diff", "file": "missing.diff"}]),
            cache,
            jobs_dir=jobs,
        )


def test_unknown_commit_is_a_clear_error_and_new_upstream_commits_are_fetched(tmp_path, jobs):
    src = tmp_path / "up"
    src.mkdir()
    sh("git", "init", "-q", cwd=src)
    write(src, {"a.py": "1\n"})
    sh("git", "add", "-A", cwd=src)
    sh("git", "commit", "-q", "-m", "one", cwd=src)
    cache = tmp_path / "c"
    prepare(make_spec(src, "HEAD"), cache, jobs_dir=jobs)
    with pytest.raises(CommitNotFound) as err:
        prepare(make_spec(src, "deadbeef"), cache, jobs_dir=jobs)
    msg = str(err.value)
    assert f"commit deadbeef not found in {src}" in msg and "fetched" in msg and "check impl.commit" in msg
    # a commit made upstream after the clone: found by the fetch that a missing commit triggers
    write(src, {"a.py": "2\n"})
    sh("git", "commit", "-q", "-am", "two", cwd=src)
    new = sh("git", "rev-parse", "HEAD", cwd=src)
    out = prepare(make_spec(src, new[:10]), cache, jobs_dir=jobs)
    assert out.commit_full == new and (Path(out.checkout_dir) / "a.py").read_text() == "2\n"


def test_dirty_tree_is_moved_aside_and_prepared_again(upstream, tmp_path, jobs):
    cache = tmp_path / "c"
    spec = make_spec(upstream["path"], "v0.1", [UINT8])
    t = Path(prepare(spec, cache, jobs_dir=jobs).checkout_dir)
    (t / "pkg/model.py").write_text("someone edited the cache\n")
    (t / "build").mkdir()  # untracked build outputs do not make a tree dirty
    recorded = json.loads((t / ".git/launcher-prepared.json").read_text())["recipe_hash"]
    state = tree_state(t, dataclasses.replace(spec, commit_full=upstream["v1"], recipe_hash=recorded))
    assert state.startswith("dirty") and "pkg/model.py" in state
    again = prepare(spec, cache, jobs_dir=jobs)
    assert again.checkout_dir == str(t)
    assert (t / "pkg/model.py").read_text() == "a = torch.bool\nb = torch.bool  # twice\n"
    aside = [p for p in (cache / "trees").iterdir() if ".dirty-" in p.name]
    assert len(aside) == 1 and (aside[0] / "pkg/model.py").read_text() == "someone edited the cache\n"  # nothing lost


def test_interrupted_tree_and_corrupt_clone_are_recovered(upstream, tmp_path, jobs):
    cache = tmp_path / "c"
    spec = make_spec(upstream["path"], "v0.2", [UINT8])
    t = Path(prepare(spec, cache, jobs_dir=jobs).checkout_dir)
    # an interrupted prepare: the tree is there but its completion marker is not
    (t / ".git" / "launcher-prepared.json").unlink()
    (t / "train.py").write_text("half\n")
    killed = t.with_name(f".tmp-{t.name}-99999")  # what a prepare killed mid-way leaves
    (killed / "pkg").mkdir(parents=True)
    out = prepare(spec, cache, jobs_dir=jobs)
    assert not killed.exists()
    assert (Path(out.checkout_dir) / "train.py").read_text() == "mask = x.to(torch.bool)  # v2\n"
    mirror = next((cache / "repos").glob("*.git"))
    # a clone whose objects are gone (refs still there): detected by fsck, cloned again
    for d in (mirror / "objects").iterdir():
        if len(d.name) == 2:
            for f in d.iterdir():
                f.chmod(0o644)
                f.unlink()
    for p in (mirror / "objects" / "pack").glob("*"):
        p.unlink()
    out = prepare(make_spec(upstream["path"], "v0.1", [ATCHECK]), cache, jobs_dir=jobs)
    assert out.commit_full == upstream["v1"]
    assert sh("git", "fsck", "--connectivity-only", cwd=mirror) == ""
    # a clone that is not a repository at all
    (mirror / "HEAD").unlink()
    out = prepare(make_spec(upstream["path"], "v0.2"), cache, jobs_dir=jobs)
    assert out.commit_full == upstream["v2"]


def test_repo_less_row_only_gets_a_recipe_hash(tmp_path, jobs):
    spec = make_spec(None, None, command="python ${lx.jobs}/toy/train.py")
    out = prepare(spec, tmp_path / "c", jobs_dir=jobs)
    assert out.checkout_dir is None and out.commit_full is None and len(out.recipe_hash) == 64
    assert not (tmp_path / "c").exists()
