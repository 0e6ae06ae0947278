"""Training data for the torchvision row: real COCO 2017 train when it is there, else a synthetic look-alike.

Why two sources: the row must run anywhere (a laptop, CI, a fresh GPU node with no dataset) and still
be a real Mask R-CNN training, so without COCO we generate, in the process, images that cost the model
what COCO images cost it: COCO-like sizes (resized by the model's own transform exactly like COCO),
about seven instances per image, each a polygon mask with its tight box and one of 80 labels.

Both datasets return what torchvision's detection models take: a float image tensor ``[3, H, W]`` in
0..1 and a target dict with ``boxes`` (float ``[N, 4]``, x1 y1 x2 y2, pixels), ``labels`` (int64 in
1..80), ``masks`` (uint8 ``[N, H, W]``), ``image_id``, ``area``, ``iscrowd``.

Nothing here needs pycocotools: COCO polygons are rasterised with Pillow (already a torchvision
dependency). When pycocotools is installed it is used instead, being the reference rasteriser.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

try:  # the reference polygon rasteriser, when installed; Pillow otherwise
    from pycocotools import mask as mask_utils
except ImportError:
    mask_utils = None

NUM_CLASSES = 80  # COCO's 80 thing categories, as contiguous labels 1..80 (0 is background)

# (width, height) of typical COCO 2017 images: most are 640 on the long side.
COCO_LIKE_SIZES = (
    (640, 480),
    (480, 640),
    (640, 427),
    (427, 640),
    (640, 426),
    (640, 512),
    (500, 375),
    (640, 360),
    (612, 612),
    (640, 424),
)
MEAN_INSTANCES = 7.3  # COCO 2017 train: ~860k instances over ~118k images


class DataError(RuntimeError):
    """The data cannot be used; the message names the problem and the way out."""


# --------------------------------------------------------------------------------------------
# Choosing the source
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    kind: str  # "coco" | "synthetic"
    reason: str  # one line a reader can check


def choose_data(coco_root: str | os.PathLike | None, mode: str = "auto") -> Choice:
    """Decide between COCO and synthetic data.

    ``auto`` uses COCO when ``coco_root`` holds both ``train2017/`` and
    ``annotations/instances_train2017.json`` and synthetic data when it holds neither (or does not
    exist). Half a COCO (one of the two) is an error rather than a silent fall-back: it is almost
    certainly a broken copy the user meant to train on. ``coco`` requires COCO; ``synthetic``
    ignores the root.
    """
    if mode not in ("auto", "coco", "synthetic"):
        raise DataError(f"--data must be auto, coco or synthetic, got {mode!r}")
    if mode == "synthetic":
        return Choice("synthetic", "--data synthetic")
    root = Path(coco_root) if coco_root else None
    images = root / "train2017" if root else None
    ann = root / "annotations" / "instances_train2017.json" if root else None
    has_images = bool(images and images.is_dir())
    has_ann = bool(ann and ann.is_file())
    if has_images and has_ann:
        return Choice("coco", f"COCO 2017 train found at {root}")
    if has_images or has_ann:
        present, missing = (images, ann) if has_images else (ann, images)
        raise DataError(
            f"incomplete COCO 2017 at {root}: {present} exists but {missing} does not; "
            "complete the copy, point --coco-root at a full one, or pass --data synthetic"
        )
    if mode == "coco":
        raise DataError(
            f"no COCO 2017 train at {root}: it needs train2017/ and "
            "annotations/instances_train2017.json; fix --coco-root or use --data auto"
        )
    where = (
        "no --coco-root given"
        if root is None
        else (
            f"{root} does not exist"
            if not root.exists()
            else f"{root} holds neither train2017/ nor annotations/instances_train2017.json"
        )
    )
    return Choice("synthetic", f"{where}: using synthetic COCO-like data")


# --------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Union of COCO polygons (flat ``[x0, y0, x1, y1, ...]`` lists) as a uint8 ``[H, W]`` mask.

    Pillow's fill includes the boundary pixels that pycocotools leaves out on the right and bottom
    edges, so its masks are about one pixel wider there (about 1% of the pixels of the synthetic
    polygons, measured against pycocotools 2.0.11): immaterial to a step's cost, and the synthetic
    boxes are taken from the masks, so they always agree with them.
    """
    polygons = [p for p in polygons if len(p) >= 6]  # a few COCO polygons are degenerate (< 3 points)
    if not polygons:
        return np.zeros((height, width), dtype=np.uint8)
    if mask_utils is not None:
        rles = mask_utils.frPyObjects(polygons, height, width)
        return mask_utils.decode(mask_utils.merge(rles)).astype(np.uint8)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        draw.polygon([(float(poly[i]), float(poly[i + 1])) for i in range(0, len(poly) - 1, 2)], fill=1, outline=1)
    return np.asarray(canvas, dtype=np.uint8)


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight box (x1, y1, x2, y2) around a mask's pixels, pixel edges included; None when empty."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if ys.size == 0:
        return None
    return float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)


def hflip(image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
    """Horizontal flip of an image and its target (Detectron trains with flipped images)."""
    width = image.shape[-1]
    target = dict(target)
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    target["boxes"] = boxes
    target["masks"] = target["masks"].flip(-1)
    return image.flip(-1), target


def _target(boxes, labels, masks, image_id: int) -> dict:
    boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    return {
        "boxes": boxes,
        "labels": torch.as_tensor(np.asarray(labels, dtype=np.int64)),
        "masks": torch.from_numpy(np.stack(masks)) if len(masks) else torch.zeros((0, 1, 1), dtype=torch.uint8),
        "image_id": image_id,
        "area": (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
        "iscrowd": torch.zeros(len(labels), dtype=torch.int64),
    }


# --------------------------------------------------------------------------------------------
# Synthetic COCO-like data
# --------------------------------------------------------------------------------------------


class SyntheticCoco(torch.utils.data.Dataset):
    """Random COCO-like images, generated on access, the same for the same (seed, index).

    Each image has a COCO-like size, a noise background and ``1 + Poisson(6.3)`` instances (mean 7.3,
    like COCO), capped at ``max_instances``. An instance is a random star-shaped polygon (6-16
    vertices) whose size is log-uniform from a few pixels to half the image, so small, medium and
    large objects all occur; it is painted onto the image in a flat colour (so there is something
    to learn), its mask is the rasterised polygon, its box the mask's tight box, its label uniform in
    1..80. Generation costs a few milliseconds per image, negligible next to a training step.
    """

    def __init__(self, length: int, seed: int = 0, max_instances: int = 50):
        if length < 1:
            raise ValueError("length must be >= 1")
        self.length, self.seed, self.max_instances = int(length), int(seed), int(max_instances)

    def __len__(self) -> int:
        return self.length

    def _instance(self, rng: np.random.Generator, width: int, height: int):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = float(np.exp(rng.uniform(np.log(4.0), np.log(min(width, height) / 2))))
        k = int(rng.integers(6, 17))
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=k))
        radii = radius * rng.uniform(0.5, 1.0, size=k)
        xs = np.clip(cx + radii * np.cos(angles), 0, width)
        ys = np.clip(cy + radii * np.sin(angles), 0, height)
        polygon = np.stack([xs, ys], axis=1).reshape(-1).tolist()
        mask = polygons_to_mask([polygon], height, width)
        return polygon, mask, mask_box(mask)

    def __getitem__(self, index: int):
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        width, height = COCO_LIKE_SIZES[int(rng.integers(len(COCO_LIKE_SIZES)))]
        image = rng.random((3, height, width), dtype=np.float32)
        n = min(self.max_instances, 1 + int(rng.poisson(MEAN_INSTANCES - 1)))
        boxes, labels, masks = [], [], []
        while len(labels) < n:
            _, mask, box = self._instance(rng, width, height)
            if box is None:  # a polygon too thin to cover a pixel: draw another
                continue
            colour = rng.random(3, dtype=np.float32)
            image[:, mask.astype(bool)] = colour[:, None]
            boxes.append(box)
            labels.append(int(rng.integers(1, NUM_CLASSES + 1)))
            masks.append(mask)
        return torch.from_numpy(image), _target(boxes, labels, masks, index)


# --------------------------------------------------------------------------------------------
# COCO 2017 train
# --------------------------------------------------------------------------------------------


class CocoTrain(torch.utils.data.Dataset):
    """COCO 2017 train as Detectron trains on it, read with the json module (no pycocotools needed).

    Like Detectron: crowd annotations (``iscrowd=1``, used only as ignore regions) and boxes under
    one pixel are dropped, images left with no annotation are skipped, the 80 category ids are mapped
    to contiguous labels 1..80, and images are flipped horizontally with probability 1/2.
    """

    def __init__(self, root: str | os.PathLike, flip: bool = True):
        self.root = Path(root)
        self.image_dir = self.root / "train2017"
        ann_path = self.root / "annotations" / "instances_train2017.json"
        try:
            with open(ann_path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise DataError(
                f"cannot read COCO annotations {ann_path}: {e}; fix the file or pass --data synthetic"
            ) from e
        try:
            cat_ids = sorted(int(c["id"]) for c in data["categories"])
            images = {int(im["id"]): im for im in data["images"]}
            annotations = data["annotations"]
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(
                f"{ann_path} is not a COCO instances file (missing or bad {e}); fix the file or pass --data synthetic"
            ) from e
        if not cat_ids:
            raise DataError(f"{ann_path} lists no categories")
        self.label_of = {cid: i + 1 for i, cid in enumerate(cat_ids)}
        self.num_classes = len(cat_ids)
        per_image: dict[int, list] = {}
        for a in annotations:
            try:
                x, y, w, h = (float(v) for v in a["bbox"])
                if a.get("iscrowd", 0) or w < 1 or h < 1 or not isinstance(a.get("segmentation"), list):
                    continue
                im = images.get(int(a["image_id"]))
                if im is None or int(a["category_id"]) not in self.label_of:
                    continue
                if (
                    min(x + w, float(im["width"])) - max(x, 0.0) < 1
                    or min(y + h, float(im["height"])) - max(y, 0.0) < 1
                ):
                    continue  # nothing of the box inside the image
                per_image.setdefault(int(a["image_id"]), []).append(a)
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(
                    f"{ann_path}: malformed annotation {a.get('id', '?')!r} ({e!r}); "
                    "fix the file or pass --data synthetic"
                ) from e
        self.ids = sorted(per_image)
        if not self.ids:
            raise DataError(
                f"{ann_path} has no image with a usable (non-crowd) annotation; fix the file or pass --data synthetic"
            )
        self.images = {i: images[i] for i in self.ids}
        self.annotations = per_image
        self.flip = flip

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        info = self.images[image_id]
        path = self.image_dir / info["file_name"]
        try:
            with Image.open(path) as im:
                pil = im.convert("RGB")
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read COCO image {path}: {e}; fix the copy or pass --data synthetic") from e
        width, height = pil.size
        image = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        boxes, labels, masks = [], [], []
        for a in self.annotations[image_id]:
            x, y, w, h = (float(v) for v in a["bbox"])
            x1, y1 = max(0.0, x), max(0.0, y)
            x2, y2 = min(float(width), x + w), min(float(height), y + h)
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            boxes.append((x1, y1, x2, y2))
            labels.append(self.label_of[int(a["category_id"])])
            masks.append(polygons_to_mask(a["segmentation"], height, width))
        if not labels:  # construction kept only images with a box inside their listed size
            raise DataError(
                f"COCO image {path} is {width}x{height}, but its annotations place every box "
                "outside it: the image file and the annotations disagree; fix the copy"
            )
        target = _target(boxes, labels, masks, image_id)
        if self.flip and torch.rand(()) < 0.5:
            image, target = hflip(image, target)
        return image, target
