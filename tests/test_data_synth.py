"""`python -m launcher.data synth`: a COCO-format set the seed rows' own loaders accept (2017 and 2014 names,
COCO's 80 categories with their real ids, polygon masks), deterministic, never overwriting what is not ours."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from launcher.data import CATEGORIES, MARKER, Params, SynthError, synth
from tests.conftest import ROOT

SPLITS_2017 = {"train2017": "train2017", "val2017": "val2017"}
SPLITS_2014 = {
    "train2014": "train2014",
    "valminusminival2014": "val2014",
    "minival2014": "val2014",
    "val2014": "val2014",
}


def digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def load(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


def test_layout_names_and_categories_are_cocos(tmp_path):
    root, counts, written = synth(tmp_path, Params(images=8, val_images=3, seed=1))
    assert written and root == (tmp_path / "coco").resolve()
    assert counts == {
        "minival2014": 3,
        "train2014": 6,
        "train2017": 8,
        "val2014": 5,
        "val2017": 3,
        "valminusminival2014": 2,
    }
    cats = load(root, "train2017")["categories"]
    assert len(cats) == 80 and [c["id"] for c in cats] == sorted(c["id"] for c in cats)
    assert cats[0] == {"id": 1, "name": "person", "supercategory": "person"}
    assert cats[-1] == {"id": 90, "name": "toothbrush", "supercategory": "indoor"}
    assert {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}.isdisjoint(c["id"] for c in cats)  # COCO's unused ids
    for split, folder in {**SPLITS_2017, **SPLITS_2014}.items():
        doc = load(root, split)
        assert doc["categories"] == [dict(c) for c in CATEGORIES]
        ann_ids = [a["id"] for a in doc["annotations"]]
        assert len(ann_ids) == len(set(ann_ids)), f"{split}: annotation ids repeat"
        images = {im["id"]: im for im in doc["images"]}
        for im in doc["images"]:
            path = root / folder / im["file_name"]
            if folder.endswith("2014"):
                assert im["file_name"] == f"COCO_{folder}_{im['id']:012d}.jpg"
            else:
                assert im["file_name"] == f"{im['id']:012d}.jpg"
            with Image.open(path) as pil:
                assert pil.size == (im["width"], im["height"]) and pil.format == "JPEG"
        assert {a["image_id"] for a in doc["annotations"]} == set(images)  # every image has objects
        for a in doc["annotations"]:
            im = images[a["image_id"]]
            x, y, w, h = a["bbox"]
            poly = a["segmentation"][0]
            assert len(poly) >= 12 and a["iscrowd"] == 0 and a["area"] > 0 and w >= 2 and h >= 2
            assert 0 <= x and x + w <= im["width"] and 0 <= y and y + h <= im["height"]
            assert min(poly[0::2]) == x and min(poly[1::2]) == y  # the box is the polygon's
            assert a["category_id"] in {c["id"] for c in CATEGORIES}


def test_2014_splits_partition_2017_as_in_coco(tmp_path):
    root, _, _ = synth(tmp_path, Params(images=9, val_images=2))
    ids = {s: {im["id"] for im in load(root, s)["images"]} for s in (*SPLITS_2017, *SPLITS_2014)}
    assert ids["train2014"] | ids["valminusminival2014"] == ids["train2017"]
    assert not ids["train2014"] & ids["valminusminival2014"]
    assert ids["minival2014"] == ids["val2017"] and not ids["val2017"] & ids["train2017"]
    assert ids["val2014"] == ids["minival2014"] | ids["valminusminival2014"]
    per_image = lambda s: sorted((a["image_id"], a["bbox"]) for a in load(root, s)["annotations"])  # noqa: E731
    assert sorted(per_image("train2014") + per_image("valminusminival2014")) == per_image("train2017")


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a, _, _ = synth(tmp_path / "a", Params(images=4, val_images=1, seed=7))
    b, _, _ = synth(tmp_path / "b", Params(images=4, val_images=1, seed=7))
    c, _, _ = synth(tmp_path / "c", Params(images=4, val_images=1, seed=8))
    assert digest(a) == digest(b)
    assert digest(a)["train2017/000000000001.jpg"] != digest(c)["train2017/000000000001.jpg"]


def test_never_overwrites_what_is_not_ours_and_keeps_an_identical_set(tmp_path):
    theirs = tmp_path / "real" / "coco"
    (theirs / "annotations").mkdir(parents=True)
    (theirs / "annotations" / "instances_train2017.json").write_text("precious")
    with pytest.raises(SynthError, match="not made by launcher.data synth"):
        synth(tmp_path / "real", Params(images=2, val_images=1))
    assert (theirs / "annotations" / "instances_train2017.json").read_text() == "precious"

    root, _, written = synth(tmp_path / "ours", Params(images=2, val_images=1))
    before = digest(root)
    assert synth(tmp_path / "ours", Params(images=2, val_images=1))[2] is False  # same set: nothing written
    with pytest.raises(SynthError, match="--force"):
        synth(tmp_path / "ours", Params(images=3, val_images=1))
    assert digest(root) == before
    _, counts, written = synth(tmp_path / "ours", Params(images=3, val_images=1), force=True)
    assert written and counts["train2017"] == 3 and json.loads((root / MARKER).read_text())["params"]["images"] == 3
    assert not [p for p in (tmp_path / "ours").iterdir() if p.name != "coco"]  # no temporary leftovers


def test_cli(tmp_path):
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "launcher.data", *a],
        cwd=ROOT,  # noqa: E731
        capture_output=True,
        text=True,
        timeout=120,
    )
    p = run("synth", "--out", str(tmp_path), "--images", "3", "--val-images", "1")
    assert p.returncode == 0, p.stderr
    assert f"data.coco_root={(tmp_path / 'coco').resolve()}" in p.stdout
    assert (tmp_path / "coco" / "annotations" / "instances_valminusminival2014.json").is_file()
    p = run("synth", "--out", str(tmp_path / "x"), "--images", "1")
    assert p.returncode == 2 and "at least 2 training images" in p.stderr and not (tmp_path / "x" / "coco").exists()
