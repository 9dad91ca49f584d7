"""Evaluate a (toy) SAM with classic prompts on ReasonVOS-lite frames: one click and one box per object.

For every object visible in a frame (at least ``--min-area`` pixels) we prompt SAM with

* **1 point**: the object pixel farthest from its boundary (the usual "first click" of interactive
  segmentation benchmarks), and
* **a box**: the tight bounding box of the mask,

and report the mean IoU of ``logits > 0`` against the mask, next to two trivial baselines that use the
same prompt without looking at the image: the box filled, and a disk of radius ``--disk-radius`` around
the click.

Frames come from the shipped valid split (``data_samples/reasonvos_lite``, every ``--frame-stride``-th
frame of every video); ``--synthetic N`` uses N fresh in-memory videos from a held-out seed instead.

    python scripts/eval_toy_sam.py                       # shipped toy weights on the valid split
    python scripts/eval_toy_sam.py --weights PATH --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from visa_lib.model.sam import (
    TOY_SAM_WEIGHTS,
    build_sam,
    center_point,
    decode_from_prompts,
    encode_frames,
    masks_from_logits,
)
from visa_lib.paths import REASONVOS_LITE

#: Seed of the held-out synthetic videos (training draws from other seeds, see train_toy_sam.py).
HELDOUT_SEED = 90210


@dataclass
class FrameSample:
    """One frame and the masks of the objects visible in it.

    Attributes:
        frame: uint8 [H,W,3] RGB.
        masks: bool [K,H,W], one per object (K >= 1).
    """

    frame: np.ndarray
    masks: np.ndarray


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight box ``(x0, y0, x1, y1)`` of a non-empty bool [H,W] mask, in pixel indices (inclusive)."""
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two bool masks of the same shape (1.0 when both are empty)."""
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def box_baseline(mask: np.ndarray) -> np.ndarray:
    """The prompt box filled: bool [H,W]."""
    x0, y0, x1, y1 = (int(v) for v in mask_box(mask))
    out = np.zeros_like(mask, dtype=bool)
    out[y0 : y1 + 1, x0 : x1 + 1] = True
    return out


def disk_baseline(mask: np.ndarray, radius: float) -> np.ndarray:
    """A disk of ``radius`` pixels around :func:`center_point`: bool [H,W]."""
    x, y = center_point(mask)
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    return (xx - x) ** 2 + (yy - y) ** 2 <= radius**2


def valid_samples(
    root: Path = REASONVOS_LITE, split: str = "valid", frame_stride: int = 4, min_area: int = 30
) -> list[FrameSample]:
    """Every ``frame_stride``-th frame of every video of a ReVOS-format split, with its objects' masks.

    Objects are the distinct ``anno_id`` of the split's expressions; each object mask is one
    ``mask_dict.json`` entry.
    """
    from visa_lib.data.revos import load_revos
    from visa_lib.data.rle import decode_rle

    data = load_revos(root, split)
    samples = []
    for name, video in data.videos.items():
        anno_ids = sorted({a for exp in video.expressions.values() for a in exp.anno_ids})
        if not anno_ids:
            continue
        for t in range(0, len(video.frames), frame_stride):
            masks = [decode_rle(data.mask_dict[str(a)][t], (video.height, video.width)) for a in anno_ids]
            masks = [m.astype(bool) for m in masks if m.sum() >= min_area]
            if masks:
                samples.append(FrameSample(data.read_frame(name, t), np.stack(masks)))
    return samples


def synthetic_samples(
    num_videos: int, seed: int = HELDOUT_SEED, num_frames: int = 4, min_area: int = 30
) -> list[FrameSample]:
    """Frames of fresh in-memory ReasonVOS-lite videos (``visa_lib.data.reasonvos_lite.make_video``)."""
    from visa_lib.data.reasonvos_lite.generator import make_video

    samples = []
    for v in range(num_videos):
        frames, masks, _info = make_video(np.random.default_rng([seed, v]), num_frames=num_frames)
        for t in range(len(frames)):
            keep = [m for m in masks[:, t] if m.sum() >= min_area]
            if keep:
                samples.append(FrameSample(frames[t], np.stack(keep)))
    return samples


def _batches(items: list[FrameSample], size: int) -> Iterator[list[FrameSample]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@torch.no_grad()
def evaluate(
    sam: torch.nn.Module,
    samples: Iterable[FrameSample],
    disk_radius: float = 20.0,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, float]:
    """Mean IoU of SAM with a 1-point and a box prompt per object, and of the two trivial baselines.

    Args:
        sam: a ``segment_anything`` ``Sam`` (e.g. ``build_sam("toy")``).
        samples: frames with their object masks (all frames of one size per batch).
        disk_radius: radius of the point baseline's disk, pixels.
        batch_size: frames per image-encoder call.
        progress: show a tqdm bar.

    Returns:
        ``{"point_miou", "box_miou", "point_baseline_miou", "box_baseline_miou", "objects", "frames"}``.
    """
    sam.eval()
    samples = list(samples)
    scores: dict[str, list[float]] = {k: [] for k in ("point", "box", "point_baseline", "box_baseline")}
    bar = tqdm(total=len(samples), desc="toy SAM eval", disable=not progress)
    for batch in _batches(samples, batch_size):
        embeddings, resized, original = encode_frames(sam, np.stack([s.frame for s in batch]))
        for emb, sample in zip(embeddings, batch, strict=True):
            gts = sample.masks
            clicks = torch.tensor([[center_point(m)] for m in gts])  # [K,1,2]
            labels = torch.ones(len(gts), 1, dtype=torch.int64)
            boxes = torch.tensor([mask_box(m) for m in gts])  # [K,4]
            by_point = masks_from_logits(
                decode_from_prompts(sam, emb[None], resized, original, points=(clicks, labels))
            ).numpy()
            by_box = decode_from_prompts(sam, emb[None], resized, original, boxes=boxes)
            by_box = masks_from_logits(by_box).numpy()
            for k, gt in enumerate(gts):
                scores["point"].append(iou(by_point[k], gt))
                scores["box"].append(iou(by_box[k], gt))
                scores["point_baseline"].append(iou(disk_baseline(gt, disk_radius), gt))
                scores["box_baseline"].append(iou(box_baseline(gt), gt))
        bar.update(len(batch))
    bar.close()
    result = {f"{k}_miou": float(np.mean(v)) * 100 for k, v in scores.items()}
    result["objects"] = len(scores["point"])
    result["frames"] = len(samples)
    return result


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=TOY_SAM_WEIGHTS, help=".safetensors or .pth file")
    parser.add_argument("--size", default="toy", help="SAM size: toy, vit_b, vit_l, vit_h")
    parser.add_argument("--root", type=Path, default=REASONVOS_LITE, help="ReVOS-format dataset root")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--frame-stride", type=int, default=4)
    parser.add_argument("--synthetic", type=int, default=0, help="use N held-out in-memory videos instead")
    parser.add_argument("--min-area", type=int, default=30, help="skip objects smaller than this (pixels)")
    parser.add_argument("--disk-radius", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    sam = build_sam(args.size, checkpoint=args.weights)
    if args.synthetic:
        samples = synthetic_samples(args.synthetic, min_area=args.min_area)
        source = f"{args.synthetic} held-out synthetic videos (seed {HELDOUT_SEED})"
    else:
        samples = valid_samples(args.root, args.split, args.frame_stride, args.min_area)
        source = f"{args.root} split {args.split!r}, every {args.frame_stride}th frame"
    if not samples:
        sys.exit(f"eval_toy_sam: no frames with objects found in {source}")
    result = evaluate(sam, samples, args.disk_radius)
    print(f"toy SAM on {source}: {result['frames']} frames, {result['objects']} objects")
    disk = f"disk r={args.disk_radius:g}: {result['point_baseline_miou']:.1f}"
    print(f"  1 point : mIoU {result['point_miou']:.1f}  ({disk})")
    print(f"  box     : mIoU {result['box_miou']:.1f}  (box filled: {result['box_baseline_miou']:.1f})")
    if args.json:
        args.json.write_text(json.dumps({"source": source, **result}, indent=2))
    return result


if __name__ == "__main__":
    main()
