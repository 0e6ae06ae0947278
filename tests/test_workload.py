"""The runnable row's workload (jobs/torchvision/): real tiny Mask R-CNN trainings, the data it trains on.

Why these tests: the row's figure is only as good as (a) the per-iteration lines the parser reads,
(b) the data being what the log says it is (real COCO vs synthetic), and (c) the synthetic targets
being valid detection targets, so nothing here is mocked: the trainings are real (tiny) runs of
jobs/torchvision/train.py as the launcher runs it, as a script in a fresh process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the workload extra (torch, torchvision) is not installed")
pytest.importorskip("torchvision", reason="the workload extra (torch, torchvision) is not installed")

from launcher.jobs.torchvision import tvbench_data as data  # noqa: E402
from launcher.jobs.torchvision import train as train_mod  # noqa: E402
from launcher.parse import get_parser  # noqa: E402

pytestmark = pytest.mark.workload

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "jobs" / "torchvision" / "train.py"
ITER_RE = re.compile(r"^tvbench iter=(\d+) t=(\d+\.\d{6}) images=(\d+) loss=(\S+)$", re.M)
TINY = ["--images-per-gpu", "1", "--min-size", "64", "--max-size", "96", "--seed", "0"]


def run_train(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run train.py the way the launcher does: a script in its own process, output captured."""
    return subprocess.run(
        [sys.executable, str(TRAIN), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


# ------------------------------------------------------------------------------------------------
# Synthetic data
# ------------------------------------------------------------------------------------------------


def test_synthetic_targets_are_valid_detection_targets():
    ds = data.SyntheticCoco(length=40, seed=3)
    counts = []
    for i in range(len(ds)):
        image, t = ds[i]
        assert image.dtype == torch.float32 and image.shape[0] == 3
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        h, w = image.shape[1:]
        n = len(t["labels"])
        counts.append(n)
        assert n >= 1
        assert t["boxes"].shape == (n, 4) and t["masks"].shape == (n, h, w) and t["masks"].dtype == torch.uint8
        assert t["labels"].dtype == torch.int64
        assert int(t["labels"].min()) >= 1 and int(t["labels"].max()) <= data.NUM_CLASSES
        boxes = t["boxes"]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        for box, mask in zip(boxes.tolist(), t["masks"].numpy()):
            assert data.mask_box(mask) == tuple(box), "a box must be the tight box of its mask"
    # about seven instances per image, like COCO (1 + Poisson(6.3): 40 images put the mean well inside)
    assert 5.0 < sum(counts) / len(counts) < 10.0
    # COCO-like sizes: the long side is about 640
    assert {max(ds[i][0].shape[1:]) for i in range(10)} <= {max(s) for s in data.COCO_LIKE_SIZES}


def test_synthetic_data_is_deterministic_from_the_seed():
    a0, ta = data.SyntheticCoco(4, seed=7)[2]
    b0, tb = data.SyntheticCoco(4, seed=7)[2]
    c0, tc = data.SyntheticCoco(4, seed=8)[2]
    assert torch.equal(a0, b0) and torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(ta["masks"], tb["masks"])
    assert not (a0.shape == c0.shape and torch.equal(a0, c0))


# ------------------------------------------------------------------------------------------------
# Choosing the data
# ------------------------------------------------------------------------------------------------


def make_coco(root: Path, n_images: int = 3) -> Path:
    """A COCO 2017 layout with tiny images: real JPEG files and an instances JSON in COCO's schema."""
    from PIL import Image

    (root / "train2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, anns = [], []
    cats = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 90, "name": "toothbrush"}]
    for i in range(n_images):
        w, h = 80 + 8 * i, 60
        name = f"{i + 1:012d}.jpg"
        Image.new("RGB", (w, h), (40 * i, 100, 200)).save(root / "train2017" / name)
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        anns.append(
            {
                "id": 10 * i + 1,
                "image_id": i + 1,
                "category_id": [1, 18, 90][i % 3],
                "iscrowd": 0,
                "bbox": [10, 10, 30, 20],
                "area": 300.0,
                "segmentation": [[10, 10, 40, 10, 40, 30, 10, 30]],
            }
        )
        anns.append(
            {
                "id": 10 * i + 2,
                "image_id": i + 1,
                "category_id": 18,
                "iscrowd": 1,
                "bbox": [0, 0, 5, 5],
                "area": 25.0,
                "segmentation": {"counts": [0, 25], "size": [h, w]},
            }
        )
    # an image whose only annotation is a crowd: Detectron skips it, so must we
    Image.new("RGB", (64, 48)).save(root / "train2017" / "000000000099.jpg")
    images.append({"id": 99, "file_name": "000000000099.jpg", "width": 64, "height": 48})
    anns.append(
        {
            "id": 999,
            "image_id": 99,
            "category_id": 1,
            "iscrowd": 1,
            "bbox": [0, 0, 5, 5],
            "area": 25.0,
            "segmentation": {"counts": [0, 25], "size": [48, 64]},
        }
    )
    (root / "annotations" / "instances_train2017.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
    return root


def test_choose_data(tmp_path):
    assert data.choose_data(tmp_path / "nope").kind == "synthetic"
    assert data.choose_data(tmp_path).kind == "synthetic"  # exists, holds neither part
    assert data.choose_data(None).kind == "synthetic"
    coco = make_coco(tmp_path / "coco")
    assert data.choose_data(coco).kind == "coco"
    assert data.choose_data(coco, "synthetic").kind == "synthetic"
    with pytest.raises(data.DataError, match="no COCO 2017 train"):
        data.choose_data(tmp_path / "nope", "coco")
    half = tmp_path / "half"
    (half / "train2017").mkdir(parents=True)
    with pytest.raises(data.DataError, match="incomplete COCO 2017.*instances_train2017.json"):
        data.choose_data(half)


def test_coco_reader_follows_detectron(tmp_path):
    ds = data.CocoTrain(make_coco(tmp_path / "coco"), flip=False)
    assert len(ds) == 3, "crowd-only images are skipped"
    labels = []
    for i in range(len(ds)):
        image, t = ds[i]
        assert len(t["labels"]) == 1, "crowd annotations are dropped"
        assert t["boxes"].tolist() == [[10.0, 10.0, 40.0, 30.0]]  # COCO xywh -> xyxy
        assert t["masks"].shape == (1, *image.shape[1:])
        x1, y1, x2, y2 = data.mask_box(t["masks"][0].numpy())
        assert (x1, y1) == (10, 10) and 40 <= x2 <= 41 and 30 <= y2 <= 31  # the polygon, rasterised
        labels.append(int(t["labels"][0]))
    assert labels == [1, 2, 3], "COCO ids 1, 18, 90 map to contiguous labels"
    assert data.polygons_to_mask([[1, 2, 3, 4]], 5, 6).shape == (5, 6), "degenerate polygons give empty masks"
    assert data.polygons_to_mask([[1, 2, 3, 4]], 5, 6).sum() == 0
    flipped, tf = data.hflip(*ds[0])
    w = ds[0][0].shape[2]
    assert tf["boxes"].tolist() == [[w - 40.0, 10.0, w - 10.0, 30.0]]
    assert torch.equal(flipped, ds[0][0].flip(-1))


def test_unusable_coco_is_a_clear_error(tmp_path, capsys):
    coco = make_coco(tmp_path / "coco")
    (coco / "annotations" / "instances_train2017.json").write_text("{not json")
    rc = train_mod.main(["--iters", "1", "--coco-root", str(coco), *TINY])
    err = capsys.readouterr().err
    assert rc != 0
    assert "tvbench error: cannot read COCO annotations" in err and "instances_train2017.json" in err
    assert "--data synthetic" in err, "the message names the way out"


def test_bad_arguments_are_rejected():
    with pytest.raises(SystemExit):
        train_mod.parse_args(["--iters", "0"])
    with pytest.raises(SystemExit):
        train_mod.parse_args(["--iters", "3", "--min-size", "900", "--max-size", "800"])


def test_lr_schedule_is_detectrons():
    assert train_mod.lr_factor(0, 16) == pytest.approx(1 / 3)
    assert train_mod.lr_factor(250, 16) == pytest.approx(2 / 3)
    assert train_mod.lr_factor(500, 16) == 1.0
    assert train_mod.lr_factor(60000, 16) == pytest.approx(0.1)
    assert train_mod.lr_factor(80000 * 16 // 2, 2) == pytest.approx(0.01)  # steps scale with the batch


# ------------------------------------------------------------------------------------------------
# Real tiny trainings
# ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_tiny_synthetic_training_gives_a_throughput(tmp_path):
    proc = run_train("--iters", "3", "--coco-root", str(tmp_path / "no-coco"), *TINY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"^tvbench data=synthetic$", out, re.M)
    assert re.search(r"^tvbench device=cpu world_size=1 images_per_gpu=1 min_size=64 max_size=96$", out, re.M)
    iters = [(int(n), float(t), int(k), float(loss)) for n, t, k, loss in ITER_RE.findall(out)]
    assert [n for n, *_ in iters] == [1, 2, 3]
    assert all(k == 1 for _, _, k, _ in iters)
    assert all(b[1] > a[1] for a, b in zip(iters, iters[1:])), "stamps increase"
    m = get_parser("torchvision").measure(out, (1, 3), 1)
    assert m.throughput > 0
    assert m.throughput == pytest.approx(2 / (iters[2][1] - iters[0][1]))


@pytest.mark.timeout(180)
def test_tiny_coco_training_uses_coco(tmp_path):
    coco = make_coco(tmp_path / "coco")
    proc = run_train("--iters", "1", "--coco-root", str(coco), *TINY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^tvbench data=coco$", proc.stdout, re.M)
    assert f"3 images with annotations from {coco}" in proc.stdout
    assert len(ITER_RE.findall(proc.stdout)) == 1


@pytest.mark.timeout(180)
def test_backbone_weights_give_detectrons_frozen_backbone(tmp_path):
    """A ResNet-50 checkpoint on disk: frozen BN, stem and res2 frozen, and the run still trains."""
    import torch
    from torchvision.models import resnet50

    weights = tmp_path / "r50.pth"
    torch.save(resnet50(weights=None).state_dict(), weights)
    proc = run_train(
        "--iters", "1", "--coco-root", str(tmp_path / "no-coco"), "--backbone-weights", str(weights), *TINY
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(frozen BN, stem+res2 frozen)" in proc.stdout and len(ITER_RE.findall(proc.stdout)) == 1

    from argparse import Namespace
    from launcher.jobs.torchvision.train import build_model

    model = build_model(Namespace(backbone_weights=str(weights), min_size=64, max_size=96), torch.device("cpu"))
    body = model.backbone.body
    assert not any(p.requires_grad for n, p in body.named_parameters() if n.startswith(("conv1", "layer1")))
    assert all(p.requires_grad for n, p in body.named_parameters() if n.startswith(("layer2", "layer3", "layer4")))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())

    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    proc = run_train("--iters", "1", "--backbone-weights", str(tmp_path / "junk.pth"), *TINY)
    assert proc.returncode == 2 and "cannot load a state dict" in proc.stderr
