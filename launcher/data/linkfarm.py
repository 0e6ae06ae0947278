"""COCO 2014 image directories as symlinks onto the COCO 2017 images: the same files under other names.

COCO's 2017 split re-cut the 2014 images: train2017 = train2014 + valminusminival2014 and val2017 =
minival2014 (Detectron `detectron/datasets/data/README.md:39-41`; tensorpack
`examples/FasterRCNN/dataset/coco.py:226`), and an image keeps its id: `COCO_train2014_000000000009.jpg`
is `train2017/000000000009.jpg`. So a row whose code reads 2014 names (maskrcnn-benchmark, Detectron,
matterport) gets `train2014/` and `val2014/` built from the 2014 annotation files' `file_name`s, each a
link to the 2017 file with that id. Every link must land on a file: the missing ones are reported by id,
never skipped.

The 2014 annotation files are hundreds of MB; the file names are read with a streaming scan (no full
JSON load), which finds exactly the `"file_name"` values (only images carry them).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Iterable, Iterator

_FILE_NAME = re.compile(rb'"file_name"\s*:\s*"([^"]+)"')
_NAME_2014 = re.compile(r"^COCO_(?:train|val)2014_(\d{12})\.jpg$")
CHUNK = 1 << 24


class LinkFarmError(ValueError):
    """The 2014 names cannot all be linked onto 2017 files; the message names what is missing."""


def file_names(annotation_file: Path) -> Iterator[str]:
    """The `file_name` values of a COCO annotation file, in order, read in chunks."""
    buf = b""
    with open(annotation_file, "rb") as fh:
        while True:
            chunk = fh.read(CHUNK)
            buf += chunk
            last = 0
            for m in _FILE_NAME.finditer(buf):  # a match ends at its closing quote: it is complete
                yield m.group(1).decode("utf-8")
                last = m.end()
            if not chunk:
                return
            # keep what may be the start of a match cut by the chunk's end (a match is far shorter than 512 bytes)
            buf = buf[max(last, len(buf) - 512) :]


def _target(name: str, coco_root: Path) -> Path | None:
    m = _NAME_2014.match(name)
    if not m:
        raise LinkFarmError(f"{name!r} is not a COCO 2014 image name (COCO_train2014_<12-digit id>.jpg)")
    for split in ("train2017", "val2017"):
        cand = coco_root / split / f"{m.group(1)}.jpg"
        if cand.is_file():
            return cand
    return None


def build(out_dir: Path, annotation_files: Iterable[Path], coco_root: Path) -> int:
    """Make OUT_DIR (replacing it) hold one link per image named in the annotation files; returns the count.

    Built in a temporary sibling and renamed into place, so a reader sees the old farm or the whole new one."""
    tmp = out_dir.with_name(f".{out_dir.name}.building-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    missing: list[str] = []
    count = 0
    for ann in annotation_files:
        for name in file_names(ann):
            target = _target(name, coco_root)
            if target is None:
                missing.append(name)
                continue
            link = tmp / name
            if not link.is_symlink():
                os.symlink(target, link)
                count += 1
    if missing:
        shutil.rmtree(tmp)
        raise LinkFarmError(
            f"{len(missing)} image(s) named in {', '.join(str(a) for a in annotation_files)} have no "
            f"file with the same id in {coco_root}/train2017 or val2017 (first: "
            f"{', '.join(missing[:5])}); data.coco_root must be the full COCO 2017 release, or give "
            f"the 2014 images as data.coco2014_root/train2014 and val2014"
        )
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    if out_dir.is_symlink() or out_dir.is_file():
        out_dir.unlink()
    elif out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old.exists():
        shutil.rmtree(old)
    return count
