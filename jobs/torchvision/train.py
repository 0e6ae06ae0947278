"""The launcher's runnable row: Mask R-CNN R-50-FPN training with torchvision, timed per iteration.

Why it exists: the seven published rows of the detectron2 benchmark need 2020-era code and eight
V100s; this row runs on whatever is here (one CPU process, or one process per GPU under torchrun) so
the launcher's whole pipeline can be exercised for real and today's hardware gets a figure.

The model is torchvision's ``maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)`` (nothing is
downloaded; with no pretrained backbone torchvision trains BatchNorm and all backbone stages, where
Detectron froze BN and the stem and res2 of its ImageNet-pretrained backbone; ``--backbone-weights``
with a ResNet-50 checkpoint on disk builds Detectron's backbone recipe instead), with 81 classes (80
COCO categories + background). The hyper-parameters are Detectron's Mask R-CNN baseline: SGD, lr
0.02 per 16 images scaled linearly to the global batch, momentum 0.9, weight decay 1e-4, linear
warm-up over 500 iterations from 1/3, 2 images per GPU, shorter side 800 and longer side at most 1333
(the model's own transform; no scale augmentation), horizontal flips on COCO.

Log contract (read by launcher/parse/torchvision.py; rank 0 only, every line flushed)::

    tvbench run: ...                                   one header line describing the run
    tvbench data=<coco|synthetic>                      the node records whether the data was real COCO
    tvbench dataset: ...                               where the data came from and why
    tvbench device=<cpu|cuda> world_size=<n> images_per_gpu=<k> min_size=<s> max_size=<m>
    tvbench iter=<n> t=<unix time, 6 decimals> images=<images this iteration, all ranks> loss=<rank 0's loss>

``iter`` counts completed iterations from 1; ``t`` is taken after the optimizer step (after a CUDA
synchronize on GPUs), so the difference of two stamps is exactly the wall time of the iterations
between them. Errors end the process with a non-zero status and a ``tvbench error:`` line.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import traceback


def _missing_workload(e: ImportError) -> None:
    """The launcher installed without its workload extra: say so, and how to fix it."""
    print(
        f"tvbench error: {e.name or e} is not installed in {sys.executable}: this row needs PyTorch and "
        "torchvision; install the workload extra: pip install 'launcher[workload]' "
        "(pip install -e '.[workload]' in a checkout)",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(2)


try:
    if __package__:
        from .tvbench_data import NUM_CLASSES, CocoTrain, DataError, SyntheticCoco, choose_data
    else:  # run as a script: python jobs/torchvision/train.py
        from tvbench_data import NUM_CLASSES, CocoTrain, DataError, SyntheticCoco, choose_data
except ImportError as _e:
    if _e.name not in ("torch", "torchvision", "numpy", "PIL"):
        raise
    _missing_workload(_e)

BASE_LR, BASE_BATCH = 0.02, 16  # Detectron: lr 0.02 for 16 images (8 GPUs x 2)
MOMENTUM, WEIGHT_DECAY = 0.9, 1e-4
WARMUP_ITERS, WARMUP_FACTOR = 500, 1.0 / 3
LR_STEPS = (60000, 80000)  # the 1x schedule's decays at 16 images per iteration


def log(msg: str) -> None:
    print(msg, flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--iters", type=int, required=True, help="iterations to run (the window's end)")
    p.add_argument("--images-per-gpu", type=int, default=2, help="images per process and iteration (default 2)")
    p.add_argument("--min-size", type=int, default=800, help="shorter side after resizing (default 800)")
    p.add_argument("--max-size", type=int, default=1333, help="longer side at most (default 1333)")
    p.add_argument(
        "--coco-root",
        default=None,
        help="COCO 2017 root (train2017/, annotations/instances_train2017.json); synthetic data without it",
    )
    p.add_argument(
        "--data",
        choices=("auto", "coco", "synthetic"),
        default="auto",
        help="auto: COCO when --coco-root holds it, else synthetic (default)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--backbone-weights",
        default=None,
        help="ImageNet ResNet-50 state dict on disk: Detectron's backbone recipe (frozen BN, stem and "
        "res2 frozen); default: none, nothing downloaded, every layer trained from scratch",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=-1,
        help="data-loader workers per process; -1: 0 on CPU, min(4, cores/processes) on GPU",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    a = p.parse_args(argv)
    for name in ("iters", "images_per_gpu", "min_size", "max_size"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if a.min_size > a.max_size:
        p.error(f"--min-size ({a.min_size}) must not exceed --max-size ({a.max_size})")
    return a


def lr_factor(it: int, global_batch: int) -> float:
    """Detectron's schedule at iteration ``it`` (0-based): linear warm-up, then steps (scaled to the batch)."""
    steps = [s * BASE_BATCH // global_batch for s in LR_STEPS]
    factor = 0.1 ** sum(it >= s for s in steps)
    if it < WARMUP_ITERS:
        alpha = it / WARMUP_ITERS
        factor *= WARMUP_FACTOR * (1 - alpha) + alpha
    return factor


def collate(batch):
    return tuple(zip(*batch))


def setup_distributed(device_arg: str):
    """(torch, device, rank, world_size), after init_process_group when launched by torchrun."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = device_arg == "cuda" or (device_arg == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda, but torch sees no CUDA device; use --device auto or cpu")
    if want_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices are visible")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    return torch, device, rank, world


def build_model(args, device):
    """torchvision's Mask R-CNN R-50-FPN. With --backbone-weights (an ImageNet ResNet-50 state dict on
    disk, e.g. torchvision's resnet50 checkpoint), the backbone is built as Detectron's recipe has it:
    frozen BatchNorm, stem and res2 frozen (trainable layers res3-res5). Without it nothing is
    downloaded and torchvision's from-scratch default applies (BatchNorm and every stage trained),
    which does a little more work per iteration than the published rows."""
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    if not args.backbone_weights:
        model = maskrcnn_resnet50_fpn(
            weights=None,
            weights_backbone=None,
            num_classes=NUM_CLASSES + 1,
            min_size=args.min_size,
            max_size=args.max_size,
        )
        return model.to(device)
    from torchvision.models import resnet50
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.detection.mask_rcnn import MaskRCNN
    from torchvision.ops.misc import FrozenBatchNorm2d

    try:
        state = torch.load(args.backbone_weights, map_location="cpu", weights_only=True)
    except Exception as e:  # OSError, pickle's UnpicklingError, torch's RuntimeError: all mean "not this file"
        raise DataError(
            f"--backbone-weights {args.backbone_weights}: cannot load a state dict ({str(e).splitlines()[0]}); give a "
            "ResNet-50 checkpoint (torchvision's resnet50 weights file) or leave it out"
        ) from e
    body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    try:
        body.load_state_dict(state)
    except RuntimeError as e:
        raise DataError(
            f"--backbone-weights {args.backbone_weights}: not a torchvision ResNet-50 state dict "
            f"({str(e).splitlines()[0]})"
        ) from e
    backbone = _resnet_fpn_extractor(body, trainable_layers=3)
    model = MaskRCNN(backbone, num_classes=NUM_CLASSES + 1, min_size=args.min_size, max_size=args.max_size)
    return model.to(device)


def build_data(args, torch, rank, world, device):
    choice = choose_data(args.coco_root, args.data)
    global_batch = args.images_per_gpu * world
    if choice.kind == "coco":
        dataset = CocoTrain(args.coco_root)
        if dataset.num_classes > NUM_CLASSES:
            raise DataError(f"{args.coco_root}: {dataset.num_classes} categories, the model has {NUM_CLASSES}")
        if len(dataset) < global_batch:
            raise DataError(
                f"{args.coco_root}: {len(dataset)} usable images, fewer than one global batch "
                f"({global_batch}); use a fuller copy or fewer images per GPU"
            )
        dataset[0]  # fail now, with a clear message, if the images cannot be read
        detail = f"{len(dataset)} images with annotations from {args.coco_root}"
    else:
        dataset = SyntheticCoco(length=args.iters * global_batch, seed=args.seed)
        detail = f"{len(dataset)} generated images (seed {args.seed}); {choice.reason}"
    sampler = torch.utils.data.distributed.DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=args.seed, drop_last=True
    )
    workers = args.workers
    if workers < 0:
        workers = 0 if device.type == "cpu" else min(4, max(1, (os.cpu_count() or 1) // world))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.images_per_gpu,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    return choice, detail, sampler, loader, workers


def batches(loader, sampler):
    """Endless iteration over the loader, a new shuffle per epoch."""
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def train(args) -> int:
    t_start = time.time()
    torch, device, rank, world = setup_distributed(args.device)
    import torchvision

    torch.manual_seed(args.seed)
    main = rank == 0
    global_batch = args.images_per_gpu * world
    lr = BASE_LR * global_batch / BASE_BATCH
    if main:
        log(
            f"tvbench run: Mask R-CNN R-50-FPN, torchvision {torchvision.__version__} maskrcnn_resnet50_fpn"
            + (
                f" with backbone {args.backbone_weights} (frozen BN, stem+res2 frozen)"
                if args.backbone_weights
                else "(weights=None, weights_backbone=None: from scratch, BN trained)"
            )
            + f", {NUM_CLASSES + 1} classes; SGD lr={lr:g} "
            f"({BASE_LR} x {global_batch}/{BASE_BATCH} images) momentum={MOMENTUM} weight_decay={WEIGHT_DECAY}, "
            f"linear warm-up {WARMUP_ITERS} iters from {WARMUP_FACTOR:.3f}; iters={args.iters} seed={args.seed}; "
            f"torch {torch.__version__}, python {platform.python_version()}, host {platform.node()}"
        )
    choice, detail, sampler, loader, workers = build_data(args, torch, rank, world, device)
    if main:
        log(f"tvbench data={choice.kind}")
        log(f"tvbench dataset: {detail}; {workers} loader workers per process")
        log(
            f"tvbench device={device.type} world_size={world} images_per_gpu={args.images_per_gpu} "
            f"min_size={args.min_size} max_size={args.max_size}"
        )

    model = build_model(args, device)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, global_batch))
    if main:
        log(f"tvbench ready: setup took {time.time() - t_start:.1f} s; training starts")

    images_per_iter = global_batch  # drop_last: every process has a full batch every iteration
    stream = batches(loader, sampler)
    for it in range(1, args.iters + 1):
        images, targets = next(stream)
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [
            {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets
        ]
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamp = time.time()
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(
                f"loss is {value} at iteration {it} ({', '.join(f'{k}={v.item():.4g}' for k, v in losses.items())}); "
                "training diverged, so later iterations would not be a fair measurement"
            )
        if main:
            log(f"tvbench iter={it} t={stamp:.6f} images={images_per_iter} loss={value:.4f}")
    if main:
        log(f"tvbench done: {args.iters} iterations in {time.time() - t_start:.1f} s including setup")
    if world > 1:
        torch.distributed.destroy_process_group()
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return train(args)
    except DataError as e:  # bad input: the message says what and how to fix it
        print(f"tvbench error: {e}", file=sys.stderr, flush=True)
        return 2
    except ImportError as e:
        if e.name not in ("torch", "torchvision"):
            raise
        _missing_workload(e)
    except Exception as e:  # anything else: keep the traceback for whoever debugs it
        traceback.print_exc()
        print(f"tvbench error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
