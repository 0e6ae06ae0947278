"""A tiny COCO-format data set, made locally and deterministically, for CPU runs and tests of the real seed code.

The seed rows load COCO from disk through their own loaders, so a stand-in has to look like COCO *on disk*:
the same directory and file names (2017 and 2014 ones: maskrcnn-benchmark, Detectron and matterport read
the 2014 splits), instances json files with COCO's 80 thing categories and their real ids (detectron2
asserts the names), polygon instance masks, boxes, areas.  Images are JPEGs of COCO-like sizes with about
seven painted star-shaped objects each (as in jobs/torchvision/tvbench_data.py, whose generator this
follows), so a model has something to learn and a step costs about what a COCO step costs.

Layout under OUT/coco (what `data.coco_root` points at):

    train2017/000000000001.jpg ...            annotations/instances_train2017.json
    val2017/...                               annotations/instances_val2017.json
    train2014/COCO_train2014_000000000001.jpg annotations/instances_train2014.json
    val2014/COCO_val2014_...jpg               annotations/instances_val2014.json
                                              annotations/instances_minival2014.json (= val2017)
                                              annotations/instances_valminusminival2014.json
                                              LAUNCHER_SYNTHETIC.json (what made it: seed, counts)

As in real COCO, train2017 = train2014 + valminusminival2014 and val2017 = minival2014 (both in val2014/).
The same seed and counts give byte-identical files.  The set is written into a temporary directory and
renamed into place, so an interrupted run leaves no half set; an existing directory is never overwritten
unless it is one of ours (`force=True` replaces one made with other parameters).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .categories import CATEGORIES, CATEGORY_IDS

VERSION = 1  # bump when the generated files change for the same parameters
MARKER = "LAUNCHER_SYNTHETIC.json"
# (width, height) of typical COCO images: most are 640 on the long side
SIZES = ((640, 480), (480, 640), (640, 427), (427, 640), (640, 426), (640, 512), (500, 375), (640, 360))
MEAN_INSTANCES = 7.3  # COCO 2017 train: ~860k instances over ~118k images
INFO = {
    "description": "launcher synthetic COCO-format data (random shapes, not COCO images)",
    "url": "",
    "version": str(VERSION),
    "year": 2017,
    "contributor": "python -m launcher.data synth",
    "date_created": "2017/09/01",
}  # fixed, so the files are deterministic
LICENSES = [{"id": 1, "name": "generated", "url": ""}]


class SynthError(ValueError):
    """Bad parameters or a destination that must not be overwritten; the message says what to do."""


@dataclass(frozen=True)
class Params:
    images: int = 100  # training images (train2017); mmdetection logs only inside an epoch: ~50 iterations at batch 2
    val_images: int = 4  # validation images (val2017 = minival2014)
    seed: int = 0
    max_instances: int = 20
    version: int = VERSION


def _polygon(rng: np.random.Generator, width: int, height: int) -> list[float]:
    """A star-shaped polygon (6-16 vertices), log-uniform size from 8 px to half the image, clipped to it."""
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    radius = float(np.exp(rng.uniform(np.log(8.0), np.log(min(width, height) / 2))))
    k = int(rng.integers(6, 17))
    angles = np.sort(rng.uniform(0, 2 * np.pi, size=k))
    radii = radius * rng.uniform(0.5, 1.0, size=k)
    xs = np.clip(cx + radii * np.cos(angles), 0, width - 1)
    ys = np.clip(cy + radii * np.sin(angles), 0, height - 1)
    return [round(float(v), 2) for v in np.stack([xs, ys], axis=1).reshape(-1)]


def _area(poly: list[float]) -> float:
    """Shoelace area of a flat [x0, y0, x1, y1, ...] polygon."""
    x, y = np.asarray(poly[0::2]), np.asarray(poly[1::2])
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def make_image(params: Params, image_id: int) -> tuple[bytes, int, int, list[dict]]:
    """JPEG bytes, width, height and the annotations (without ids) of image IMAGE_ID; pure in (params, id)."""
    rng = np.random.default_rng([params.seed, image_id])
    width, height = SIZES[int(rng.integers(len(SIZES)))]
    coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)  # a smooth background, cheap to encode
    canvas = Image.fromarray(coarse, "RGB").resize((width, height), Image.BILINEAR)
    draw = ImageDraw.Draw(canvas)
    n = min(params.max_instances, 1 + int(rng.poisson(MEAN_INSTANCES - 1)))
    anns: list[dict] = []
    while len(anns) < n:
        poly = _polygon(rng, width, height)
        xs, ys = poly[0::2], poly[1::2]
        x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
        if x1 - x0 < 2 or y1 - y0 < 2 or _area(poly) < 4:  # clipped to a sliver at the border: draw another
            continue
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw.polygon([(poly[i], poly[i + 1]) for i in range(0, len(poly), 2)], fill=colour)
        anns.append(
            {
                "category_id": int(CATEGORY_IDS[int(rng.integers(len(CATEGORY_IDS)))]),
                "segmentation": [poly],
                "area": round(_area(poly), 2),
                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                "iscrowd": 0,
            }
        )
    buf = io.BytesIO()
    canvas.save(buf, format="JPEG", quality=90)
    return buf.getvalue(), width, height, anns


def _document(images: list[dict], anns: list[dict]) -> dict:
    return {
        "info": INFO,
        "licenses": LICENSES,
        "images": images,
        "annotations": anns,
        "categories": [dict(c) for c in CATEGORIES],
    }


def _write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")), encoding="utf-8")


def _splits(params: Params) -> dict[int, tuple[str, str]]:
    """image id -> (2017 split, 2014 split): like COCO, every 4th training image is valminusminival2014."""
    out = {}
    for i in range(params.images):
        image_id = i + 1
        out[image_id] = (
            "train2017",
            "valminusminival2014" if i % 4 == 3 or (params.images < 4 and i == params.images - 1) else "train2014",
        )
    for i in range(params.val_images):
        out[params.images + i + 1] = ("val2017", "minival2014")
    return out


def _generate(tmp: Path, params: Params) -> dict[str, int]:
    """Write the whole set under TMP; returns the number of images per json."""
    for d in ("train2017", "val2017", "train2014", "val2014", "annotations"):
        (tmp / d).mkdir(parents=True)
    groups: dict[str, tuple[list[dict], list[dict]]] = {}
    ann_id = 0
    for image_id, (s17, s14) in _splits(params).items():
        data, width, height, anns = make_image(params, image_id)
        folder14 = "train2014" if s14 == "train2014" else "val2014"
        names = {s17: f"{image_id:012d}.jpg", s14: f"COCO_{folder14}_{image_id:012d}.jpg"}
        (tmp / s17 / names[s17]).write_bytes(data)
        target14 = tmp / folder14 / names[s14]
        try:
            os.link(tmp / s17 / names[s17], target14)  # same bytes under the 2014 name, stored once
        except OSError:
            target14.write_bytes(data)
        for split, name in names.items():
            images, annotations = groups.setdefault(split, ([], []))
            images.append(
                {
                    "id": image_id,
                    "file_name": name,
                    "width": width,
                    "height": height,
                    "license": 1,
                    "coco_url": "",
                    "flickr_url": "",
                    "date_captured": "2017-09-01 00:00:00",
                }
            )
            for a in anns:
                ann_id += 1
                annotations.append({**a, "id": ann_id, "image_id": image_id})
    groups["val2014"] = tuple(groups["minival2014"][k] + groups["valminusminival2014"][k] for k in (0, 1))
    for split, (images, annotations) in groups.items():
        _write_json(tmp / "annotations" / f"instances_{split}.json", _document(images, annotations))
    counts = {split: len(images) for split, (images, _) in sorted(groups.items())}
    _write_json(
        tmp / MARKER, {"generator": "python -m launcher.data synth", "params": asdict(params), "images": counts}
    )
    return counts


def read_marker(root: Path) -> dict | None:
    """The marker of a set we made at ROOT, or None (not ours, or unreadable)."""
    try:
        return json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def synth(out: str | Path, params: Params = Params(), force: bool = False) -> tuple[Path, dict[str, int], bool]:
    """Make the set under OUT/coco; returns (coco root, images per json, whether it was (re)written).

    The same parameters on an existing set of ours: nothing is written (it is already that set)."""
    if params.images < 2:
        raise SynthError(
            f"--images {params.images}: need at least 2 training images (train2014 and "
            "valminusminival2014 each get one or more)"
        )
    if params.val_images < 1:
        raise SynthError(f"--val-images {params.val_images}: need at least 1 validation image")
    if params.max_instances < 1:
        raise SynthError(f"--max-instances {params.max_instances}: need at least 1")
    root = Path(out).expanduser().resolve() / "coco"
    marker = read_marker(root)
    if root.exists():
        if marker is None:
            raise SynthError(
                f"{root} exists and was not made by launcher.data synth (no {MARKER}): "
                "choose another --out; nothing was changed"
            )
        if marker.get("params") == asdict(params):
            return root, marker.get("images", {}), False
        if not force:
            raise SynthError(
                f"{root} holds a synthetic set made with other parameters ({marker.get('params')}); "
                "pass --force to replace it, or choose another --out"
            )
    tmp = root.with_name(f".coco.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        try:
            counts = _generate(tmp, params)
        except OSError as e:  # an unwritable or full --out: the place and the way out, no traceback
            raise SynthError(
                f"cannot write {e.filename or root}: {e.strerror or e}; choose an --out you can write "
                "to (with room for the set: a few MB)"
            ) from None
        if root.exists():  # ours, other parameters, --force: keep it until the new one is complete
            old = root.with_name(f".coco.old-{os.getpid()}")
            os.replace(root, old)
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root, counts, True
