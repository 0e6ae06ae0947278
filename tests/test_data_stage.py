"""The data step (issue 12): each row's exact COCO layout from a tiny COCO the test makes, with symlinks, and
the checks before submission that name what is missing and where it comes from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.data import linkfarm
from launcher.data.stage import StageError, problems, stage
from tests.coco_helpers import make_coco
from tests.conftest import mirror
from tests.conftest import ROOT

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def data_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "launcher.data", "stage", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def coco(tmp_path):
    return make_coco(tmp_path / "coco")


def plan_row(compose, tmp_path, row, *overrides):
    from launcher.plan import plan

    return plan(compose(f"impl={row}", f"cache_dir={tmp_path / 'cache'}", *overrides), tmp_path / "run")


def test_every_row_gets_the_release_its_code_loads(compose, tmp_path, coco):
    src = [f"data.coco_root={coco['coco_root']}", f"data.coco2014_root={coco['coco2014_root']}"]
    p = data_cli(
        "impl=detectron2,mmdetection,tensorpack,maskrcnn_benchmark,detectron,matterport",
        f"cache_dir={tmp_path / 'cache'}",
        *src,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    staged = tmp_path / "cache" / "data"
    c17 = coco["coco_root"]
    # 2017: detectron2 ($DETECTRON2_DATASETS/coco), mmdetection (data/coco), tensorpack (DATA.BASEDIR)
    for name in ("train2017", "val2017", "annotations"):
        assert (staged / "coco2017" / "coco" / name).resolve() == (c17 / name).resolve()
    # 2014 names onto the 2017 images, by image id: train2014 from instances_train2014.json, val2014 from
    # valminusminival2014 (train2017 images) and minival2014 (val2017 images)
    c14 = staged / "coco2014"
    assert sorted(p.name for p in (c14 / "train2014").iterdir()) == [
        f"COCO_train2014_{i:012d}.jpg" for i in (9, 25, 30, 34)
    ]
    assert (c14 / "val2014" / "COCO_val2014_000000000042.jpg").resolve() == (
        c17 / "train2017" / "000000000042.jpg"
    ).resolve()
    assert (c14 / "val2014" / "COCO_val2014_000000000139.jpg").resolve() == (
        c17 / "val2017" / "000000000139.jpg"
    ).resolve()
    assert (c14 / "coco_train2014").resolve() == (c14 / "train2014").resolve()  # Detectron's directory names
    for name in ("instances_train2014.json", "instances_valminusminival2014.json", "instances_minival2014.json"):
        assert (c14 / "annotations" / name).resolve() == (coco["coco2014_root"] / "annotations" / name).resolve()
    for row in ("detectron2", "mmdetection", "tensorpack", "maskrcnn_benchmark", "detectron", "matterport"):
        assert problems(plan_row(compose, tmp_path, row, *src)) == ([], []), row
        assert f"{row}: " in p.stdout and "(complete)" in p.stdout


def test_a_row_reading_2014_names_needs_the_2014_annotations(compose, tmp_path, coco):
    spec = plan_row(compose, tmp_path, "maskrcnn_benchmark", f"data.coco_root={coco['coco_root']}")
    with pytest.raises(StageError, match=r"set data.coco2014_root to a folder with annotations/instances_train2014"):
        stage(spec)
    (found,) = problems(spec)[0]
    assert "data.coco2014_root" in found
    # with the 2017 release only it is still not staged: nothing is guessed
    p = data_cli("impl=matterport", f"cache_dir={tmp_path / 'cache'}", f"data.coco_root={coco['coco_root']}")
    assert p.returncode == 1 and "data.coco2014_root" in p.stdout


def test_missing_files_are_named_with_where_they_come_from(compose, tmp_path, coco):
    (coco["coco2014_root"] / "annotations" / "instances_valminusminival2014.json").unlink()
    (coco["coco_root"] / "annotations" / "instances_val2017.json").unlink()
    src = [f"data.coco_root={coco['coco_root']}", f"data.coco2014_root={coco['coco2014_root']}"]
    mrcnn = plan_row(compose, tmp_path, "maskrcnn_benchmark", *src)
    stage(mrcnn, log=lambda s: None)
    (missing,), later = problems(mrcnn)
    assert (
        "coco2014/annotations/instances_valminusminival2014.json is missing (from "
        + str(coco["coco2014_root"] / "annotations" / "instances_valminusminival2014.json")
        in missing
    )
    assert later == []
    # mmdetection loads the val json at start (it validates during training): a problem, not a warning
    mmdet = plan_row(compose, tmp_path, "mmdetection", *src)
    stage(mmdet)
    assert any("instances_val2017.json is missing" in p for p in problems(mmdet)[0])
    # detectron2 reads it only in the evaluation after its last iteration: a warning
    d2 = plan_row(compose, tmp_path, "detectron2", *src)
    assert problems(d2)[0] == [] and any("only after the benchmark window" in w for w in problems(d2)[1])


def test_an_image_the_2017_release_lacks_is_named_by_id(compose, tmp_path, coco):
    ann = coco["coco2014_root"] / "annotations" / "instances_train2014.json"
    doc = json.loads(ann.read_text())
    doc["images"].append({"id": 777, "file_name": "COCO_train2014_000000000777.jpg", "width": 1, "height": 1})
    ann.write_text(json.dumps(doc))
    spec = plan_row(
        compose,
        tmp_path,
        "detectron",
        f"data.coco_root={coco['coco_root']}",
        f"data.coco2014_root={coco['coco2014_root']}",
    )
    with pytest.raises(linkfarm.LinkFarmError, match=r"1 image\(s\) .* COCO_train2014_000000000777.jpg"):
        stage(spec)
    assert not (tmp_path / "cache" / "data" / "coco2014" / "train2014").exists()  # nothing half-built


def test_restaging_from_other_folders_needs_force(compose, tmp_path, coco):
    other = make_coco(tmp_path / "other", with_2014=False)
    p = data_cli("impl=detectron2", f"cache_dir={tmp_path / 'cache'}", f"data.coco_root={coco['coco_root']}")
    assert p.returncode == 0, p.stdout
    p = data_cli("impl=detectron2", f"cache_dir={tmp_path / 'cache'}", f"data.coco_root={other['coco_root']}")
    assert p.returncode == 1 and "--force" in p.stdout and str(coco["coco_root"]) in p.stdout
    spec = plan_row(compose, tmp_path, "detectron2", f"data.coco_root={other['coco_root']}")
    assert "was staged from" in problems(spec)[0][0]
    p = data_cli(
        "impl=detectron2", f"cache_dir={tmp_path / 'cache'}", f"data.coco_root={other['coco_root']}", "--force"
    )
    assert p.returncode == 0 and problems(spec) == ([], [])


def test_file_names_are_read_across_chunk_boundaries(tmp_path, coco, monkeypatch):
    ann = coco["coco2014_root"] / "annotations" / "instances_train2014.json"
    want = [im["file_name"] for im in json.loads(ann.read_text())["images"]]
    for chunk in (7, 13, 64, 1 << 20):
        monkeypatch.setattr(linkfarm, "CHUNK", chunk)
        assert list(linkfarm.file_names(ann)) == want, chunk


# ---------------------------------------------------------------- SimpleDet: a roidb made by the row's own script

STANDIN_ROIDB = """\
# STAND-IN for SimpleDet's utils/create_coco_roidb.py (the test's repository, not SimpleDet's code): the same
# inputs and output, paths relative to the work tree, every image asserted to exist
import json, os, pickle, sys
split = sys.argv[sys.argv.index("--dataset-split") + 1]
doc = json.load(open("data/coco/annotations/instances_%s.json" % split))
recs = []
for im in doc["images"]:
    url = "data/coco/images/%s/%s" % (split, im["file_name"])
    assert os.path.exists(url), url
    recs.append({"image_url": url, "im_id": im["id"]})
os.makedirs("data/cache", exist_ok=True)
pickle.dump(recs, open("data/cache/coco_%s.roidb" % split, "wb"))
print("stand-in roidb:", len(recs))
"""


def simpledet_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "simpledet-mirror"
    (repo / "utils").mkdir(parents=True)
    (repo / "utils" / "create_coco_roidb.py").write_text(STANDIN_ROIDB)
    (repo / "detection_train.py").write_text("print('not run here')\n")
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


def test_simpledet_roidb_is_made_by_its_own_script_in_its_work_tree_once(compose, tmp_path, coco):
    from launcher.prepare import prepare

    repo = simpledet_repo(tmp_path)
    over = [
        f"data.coco_root={coco['coco_root']}",
        f"impl.repo={repo}",
        "impl.commit=HEAD",
        "impl.environment.kind=launcher",
    ]
    spec = plan_row(compose, tmp_path, "simpledet", *over)
    assert any("not staged" in p for p in problems(spec)[0])
    spec = prepare(spec, tmp_path / "cache")
    said = []
    stage(spec, log=said.append)
    roidb = tmp_path / "cache" / "data" / "simpledet" / "data" / "cache" / "coco_train2017.roidb"
    import pickle

    recs = pickle.loads(roidb.read_bytes())
    assert [r["image_url"] for r in recs][:2] == [
        "data/coco/images/train2017/000000000009.jpg",
        "data/coco/images/train2017/000000000025.jpg",
    ]
    assert (Path(spec.checkout_dir) / "data").resolve() == roidb.parent.parent.resolve()
    assert problems(spec) == ([], []) and any("making" in s for s in said)
    said.clear()
    stage(spec, log=said.append)  # fresh: not made again
    assert said == []
    ann = coco["coco_root"] / "annotations" / "instances_train2017.json"
    ann.write_text(ann.read_text() + " ")  # the annotations changed: stale until made again
    assert any("older than its sources" in p for p in problems(spec)[0])
    stage(spec, log=said.append)
    assert problems(spec) == ([], []) and any("making" in s for s in said)


def test_simpledet_roidb_failing_in_its_environment_says_where_to_run_it(compose, tmp_path, coco):
    from launcher.prepare import prepare

    repo = simpledet_repo(tmp_path)
    spec = prepare(
        plan_row(
            compose,
            tmp_path,
            "simpledet",
            f"data.coco_root={coco['coco_root']}",
            f"impl.repo={repo}",
            "impl.commit=HEAD",
            "impl.environment.kind=venv",
            f"impl.environment.path={tmp_path / 'no-venv'}",
        ),
        tmp_path / "cache",
    )
    with pytest.raises(StageError, match=r"srun python -m launcher.data stage impl=simpledet"):
        stage(spec)


@pytest.mark.slow
def test_simpledet_real_roidb_script(compose, tmp_path, coco, coco_venv):
    """SimpleDet's own utils/create_coco_roidb.py (from its bundle at the seed's commit) makes the roidb the
    row reads, run by the data step in the row's environment (a venv with pycocotools here)."""
    bundle = mirror("simpledet.bundle")
    if bundle is None:
        pytest.skip("no simpledet.bundle in ../shared/mirrors (or $LAUNCHER_MIRRORS): the seed's code is not here")
    p = data_cli(
        "impl=simpledet",
        f"cache_dir={tmp_path / 'cache'}",
        f"data.coco_root={coco['coco_root']}",
        f"impl.repo={bundle}",
        "impl.environment.kind=venv",
        f"impl.environment.path={coco_venv}",
    )
    assert p.returncode == 0 and "simpledet layout" in p.stdout and "(complete)" in p.stdout, p.stdout + p.stderr
    assert (tmp_path / "cache" / "data" / "simpledet" / "data" / "cache" / "coco_train2017.roidb").stat().st_size > 0
