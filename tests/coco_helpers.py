"""A tiny COCO made by the tests (not a training set): the 2017 release's layout and file names, and the
2014 annotation files that re-cut the same images (train2014 + valminusminival2014 = train2017,
minival2014 = val2017, an image keeping its id), each image a small real JPEG with one polygon object."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
]


def _image(path: Path, seed: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), (seed * 40 % 256, 80, 120)).save(path, "JPEG")


def _instances(images: list[tuple[int, str]]) -> dict:
    anns = []
    for k, (image_id, _) in enumerate(images):
        anns.append(
            {
                "id": 100 + k,
                "image_id": image_id,
                "category_id": CATEGORIES[k % 2]["id"],
                "iscrowd": 0,
                "bbox": [4.0, 6.0, 20.0, 12.0],
                "area": 240.0,
                "segmentation": [[4.0, 6.0, 24.0, 6.0, 24.0, 18.0, 4.0, 18.0]],
            }
        )
    return {
        "info": {"description": "launcher test COCO"},
        "licenses": [],
        "images": [{"id": i, "file_name": name, "width": 64, "height": 48} for i, name in images],
        "annotations": anns,
        "categories": CATEGORIES,
    }


def make_coco(root: Path, train_ids=(9, 25, 30, 34, 36, 42), val_ids=(139, 285), with_2014: bool = True) -> dict:
    """ROOT/coco2017 (train2017/, val2017/, annotations/instances_{train,val}2017.json) and, with_2014,
    ROOT/coco2014/annotations/instances_{train2014,valminusminival2014,minival2014}.json (no 2014 images).
    Returns the paths."""
    c17, c14 = root / "coco2017", root / "coco2014"
    for split, ids in (("train2017", train_ids), ("val2017", val_ids)):
        for i in ids:
            _image(c17 / split / f"{i:012d}.jpg", i)
        (c17 / "annotations").mkdir(parents=True, exist_ok=True)
        (c17 / "annotations" / f"instances_{split}.json").write_text(
            json.dumps(_instances([(i, f"{i:012d}.jpg") for i in ids]))
        )
    if with_2014:
        cut = len(train_ids) * 2 // 3
        files = {
            "instances_train2014.json": [(i, f"COCO_train2014_{i:012d}.jpg") for i in train_ids[:cut]],
            "instances_valminusminival2014.json": [(i, f"COCO_val2014_{i:012d}.jpg") for i in train_ids[cut:]],
            "instances_minival2014.json": [(i, f"COCO_val2014_{i:012d}.jpg") for i in val_ids],
        }
        (c14 / "annotations").mkdir(parents=True, exist_ok=True)
        for name, images in files.items():
            (c14 / "annotations" / name).write_text(json.dumps(_instances(images)))
    return {"coco_root": c17, "coco2014_root": c14 if with_2014 else None}


def synth_coco(tmp_path: Path) -> Path:
    """The launcher's own synthetic COCO set (`python -m launcher.data synth`, 2017 and 2014 names) under
    TMP_PATH/syn, as a user makes it for a smoke run of a seed row; returns its coco root."""
    syn = subprocess.run(
        [sys.executable, "-m", "launcher.data", "synth", "--out", str(tmp_path / "syn")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert syn.returncode == 0, syn.stderr
    return tmp_path / "syn" / "coco"
