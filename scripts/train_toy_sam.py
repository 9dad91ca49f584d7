"""Pretrain the toy SAM on ReasonVOS-lite frames, so that it really segments (it stands in for SAM ViT-H).

The model is ``build_sam("toy", pretrained=False)``: segment_anything's own ImageEncoderViT,
PromptEncoder and MaskDecoder at small widths. Training data are fresh in-memory clips from the
ReasonVOS-lite generator (``visa_lib.data.reasonvos_lite.make_video``), held in a pool of clips of which
one is replaced every step, so the model keeps seeing new scenes without rendering a whole batch
per step. Every image is decoded with point prompts and with box prompts for up to three of its
visible objects, and ``--class-prob`` of the images also with class prompts:

* **points**: 1-3 clicks, the first inside the object, the others inside (70 %) or outside it;
* **box**: the object's bounding box with each side jittered by up to 10 % of its length;
* **class**: one learned vector per object description ("cat", "red square") given as a single
  sparse token with the dense ``no_mask_embed`` -- exactly the form of VISA's ``[SEG]`` prompt. The
  target is every object with that description; 15 % of the class prompts name an absent
  description and ask for an empty mask. These vectors are discarded after training; they make the
  frozen image embedding carry category/colour information and get the decoder used to one-token
  prompts, which is how VISA will prompt it.
* **where** (``--where-prob`` of the images): one-token prompts that name AND place one object:
  its description's class vector plus a learnt linear map of its centroid ``(x, y)`` in [-1, 1];
  the target is that object alone. A point prompt marks a place through random Fourier features
  that a small ``[SEG]`` head cannot produce; this teaches the decoder a code it can
  (benchmarks/README.md, issue 15). ``--freeze-encoder`` trains only the prompt encoder and decoder.

Loss per mask: BCE (mean over pixels) + DICE (VISA's form), on the logits brought back to the frame
size by ``postprocess_masks``; averaged over masks. Only the single-mask output is trained (VISA uses
``multimask_output=False``); the multimask tokens and the IoU head keep their initial weights.

**Resolution.** The shipped toy SAM has 8-px patches (a 32 x 32 image embedding). Its first three
stages train at 16-px patches (``--patch-size 16``: ten times cheaper per step); the fourth starts from
them with ``--init`` at 8-px patches, which ``resample_state`` makes possible (patch kernel, position
embedding and global relative-position tables resampled, everything else copied), and trains with class
prompts on every image. ``benchmarks/README.md`` ("Toy SAM") lists the four commands.

    OMP_NUM_THREADS=1 nohup python scripts/train_toy_sam.py > outputs/train_toy_sam.log 2>&1 &

Writes ``data_samples/weights/toy_sam.safetensors`` (every ``--save-every`` steps and at the end).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from visa_lib.data.reasonvos_lite import sprites
from visa_lib.data.reasonvos_lite.generator import make_video
from visa_lib.metrics import jaccard
from visa_lib.model.sam import (
    SAM_SPECS,
    TOY_SAM_WEIGHTS,
    build_sam,
    decode_from_embeddings,
    decode_from_prompts,
    encode_frames,
    load_sam_state_dict,
    mask_centroid,
    preprocess_for_sam,
    save_sam,
)
from visa_lib.weights import read_state_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_toy_sam import evaluate, synthetic_samples  # noqa: E402  (sibling script)

#: Every object description the generator can produce; index = row of the class-prompt table.
DESCRIPTIONS = sorted(
    [sprites.PHOTO_CATEGORIES[c][0] for c in sprites.PHOTO_CATEGORIES]
    + [f"{colour} {sprites.SHAPES[s][0]}" for s in sprites.SHAPES for colour in sprites.COLOURS]
)
#: Seed of the training clips (the held-out evaluation uses eval_toy_sam.HELDOUT_SEED).
TRAIN_SEED = 31337
MIN_AREA = 20


@dataclass
class Clip:
    """A short rendered clip: frames uint8 [T,H,W,3], masks bool [N,T,H,W], descriptions of the N objects."""

    frames: np.ndarray
    masks: np.ndarray
    descriptions: list[str]


def render_clip(index: int, num_frames: int, seed: int = 0, attempts: int = 5) -> Clip:
    """Clip ``index`` of training stream ``seed``; layouts make_video cannot place objects in are skipped."""
    for attempt in range(attempts):
        rng = np.random.default_rng([TRAIN_SEED + seed, index] + ([attempt] if attempt else []))
        try:
            frames, masks, info = make_video(rng, num_frames=num_frames)
        except RuntimeError:  # make_video gives up on rare layouts (objects visible < 3 frames)
            continue
        return Clip(frames, masks, [o.desc for o in info.objects])
    raise RuntimeError(f"train_toy_sam: make_video failed {attempts} times for clip {index}")


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """VISA's DICE, unscaled form: ``1 - (2 sum(p t) + eps) / (sum p + sum t + eps)`` per mask, [K]."""
    p = logits.sigmoid().flatten(1)
    t = target.flatten(1)
    return 1 - (2 * (p * t).sum(-1) + eps) / (p.sum(-1) + t.sum(-1) + eps)


def _random_pixel(rng: np.random.Generator, region: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(region)
    i = int(rng.integers(len(ys)))
    return float(xs[i]), float(ys[i])


def point_prompts(rng: np.random.Generator, masks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Clicks for each mask: coords float [K,P,2] (x, y), labels int [K,P] (1 in, 0 out, -1 padding)."""
    clicks = []
    for m in masks:
        pts = [(*_random_pixel(rng, m), 1)]
        for _ in range(int(rng.choice([0, 0, 0, 1, 2]))):
            inside = rng.random() < 0.7
            pts.append((*_random_pixel(rng, m if inside else ~m), int(inside)))
        clicks.append(pts)
    width = max(len(c) for c in clicks)
    coords = torch.zeros(len(masks), width, 2)
    labels = -torch.ones(len(masks), width, dtype=torch.int64)
    for k, pts in enumerate(clicks):
        for j, (x, y, label) in enumerate(pts):
            coords[k, j] = torch.tensor([x, y])
            labels[k, j] = label
    return coords, labels


def box_prompts(rng: np.random.Generator, masks: np.ndarray) -> torch.Tensor:
    """Jittered bounding boxes float [K,4] (x0, y0, x1, y1)."""
    h, w = masks.shape[-2:]
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
        bw, bh = x1 - x0 + 1, y1 - y0 + 1
        jitter = rng.uniform(-0.1, 0.1, 4) * np.array([bw, bh, bw, bh])
        box = np.array([x0, y0, x1, y1], dtype=np.float64) + jitter
        box = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])
        boxes.append(box)
    return torch.tensor(np.array(boxes), dtype=torch.float32)


def sample_image(rng: np.random.Generator, pool: list[Clip], max_objects: int = 3):
    """A random frame of the pool with the masks of up to ``max_objects`` visible objects."""
    while True:
        clip = pool[int(rng.integers(len(pool)))]
        t = int(rng.integers(len(clip.frames)))
        frame, masks = clip.frames[t], clip.masks[:, t]
        if rng.random() < 0.5:  # horizontal flip
            frame, masks = frame[:, ::-1], masks[:, :, ::-1]
        visible = [k for k in range(len(masks)) if masks[k].sum() >= MIN_AREA]
        if visible:
            chosen = rng.permutation(visible)[:max_objects]
            return np.ascontiguousarray(frame), np.ascontiguousarray(masks), clip.descriptions, chosen


def object_centroids(masks: np.ndarray) -> torch.Tensor:
    """Centre of mass ``(x, y)`` of each bool mask [K,H,W], scaled to [-1, 1]: float [K, 2]."""
    return torch.stack([mask_centroid(mask) for mask in masks])


def class_targets(
    rng: np.random.Generator, masks: np.ndarray, descriptions: list[str], chosen: np.ndarray
) -> tuple[list[int], np.ndarray]:
    """Class-prompt indices and their targets: the union of all objects with the chosen description."""
    indices, targets = [], []
    for k in chosen:
        name = descriptions[k]
        if name in [DESCRIPTIONS[i] for i in indices]:
            continue
        indices.append(DESCRIPTIONS.index(name))
        targets.append(np.any([masks[j] for j in range(len(masks)) if descriptions[j] == name], axis=0))
    if rng.random() < 0.15:
        absent = [i for i, d in enumerate(DESCRIPTIONS) if d not in descriptions]
        indices.append(int(rng.choice(absent)))
        targets.append(np.zeros_like(masks[0]))
    return indices, np.stack(targets)


@torch.no_grad()
def class_prompt_miou(sam: torch.nn.Module, class_embed: torch.nn.Embedding, clips: list[Clip]) -> float:
    """Mean IoU (x100) of class prompts on held-out clips: one prompt per description present in a frame.

    The target of a description is the union of its objects, as in training. This is the skill VISA's
    ``[SEG]`` prompt relies on (a one-token prompt that names what to segment).
    """
    scores = []
    for clip in clips:
        embeddings, resized, original = encode_frames(sam, clip.frames)
        for t in range(len(clip.frames)):
            masks = clip.masks[:, t]
            names = sorted({d for d, m in zip(clip.descriptions, masks, strict=True) if m.sum() >= MIN_AREA})
            if not names:
                continue
            prompts = class_embed(torch.tensor([DESCRIPTIONS.index(n) for n in names]))
            logits = decode_from_embeddings(sam, embeddings[t : t + 1], prompts, resized, original)
            for name, pred in zip(names, (logits > 0).numpy(), strict=True):
                gt = np.any([m for d, m in zip(clip.descriptions, masks, strict=True) if d == name], axis=0)
                scores.append(jaccard(pred, gt))
    return float(np.mean(scores)) * 100


@torch.no_grad()
def where_prompt_miou(
    sam: torch.nn.Module, class_embed: torch.nn.Embedding, where_proj: torch.nn.Linear, clips: list[Clip]
) -> dict[str, float]:
    """Mean IoU (x100) of "where" prompts on held-out clips, one per visible object (target: that object).

    Split by whether another visible object shares the description (``twinned``): only the position
    code can pick the right one of those.
    """
    scores: dict[str, list[float]] = {"unique": [], "twinned": []}
    for clip in clips:
        embeddings, resized, original = encode_frames(sam, clip.frames)
        for t in range(len(clip.frames)):
            masks = clip.masks[:, t]
            visible = [k for k in range(len(masks)) if masks[k].sum() >= MIN_AREA]
            if not visible:
                continue
            names = torch.tensor([DESCRIPTIONS.index(clip.descriptions[k]) for k in visible])
            prompts = class_embed(names) + where_proj(object_centroids(masks[visible]))
            logits = decode_from_embeddings(sam, embeddings[t : t + 1], prompts, resized, original)
            for k, pred in zip(visible, (logits > 0).numpy(), strict=True):
                twins = sum(clip.descriptions[j] == clip.descriptions[k] for j in visible) > 1
                scores["twinned" if twins else "unique"].append(jaccard(pred, masks[k]))
    return {group: float(np.mean(v)) * 100 for group, v in scores.items() if v}


def label_map(
    masks: np.ndarray, descriptions: list[str], resized: tuple[int, int], size: int
) -> torch.Tensor:
    """Description index per pixel (background = ``len(DESCRIPTIONS)``, padding = -1), int64 [size, size].

    The frame is resized like SAM's input (``resized`` inside the ``img_size`` square, nearest) and
    brought to ``size`` (the decoder's low-resolution grid), so it lines up with the image embedding.
    """
    labels = np.full(masks.shape[1:], len(DESCRIPTIONS), dtype=np.int64)
    for m, name in zip(masks, descriptions, strict=True):
        labels[m] = DESCRIPTIONS.index(name)
    h, w = resized
    scale = size / max(h, w)
    small = cv2.resize(
        labels.astype(np.float32), (round(w * scale), round(h * scale)), interpolation=cv2.INTER_NEAREST
    )
    out = np.full((size, size), -1, dtype=np.int64)
    out[: small.shape[0], : small.shape[1]] = small.astype(np.int64)
    return torch.from_numpy(out)


def dense_class_loss(head: torch.nn.Conv2d, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a 1x1 linear probe on the image embedding, upsampled to the label grid.

    It asks the embedding to say *what* lies at every location in a form one prompt token can read
    by attention (a dot product), which is how VISA's ``[SEG]`` prompt finds its object.
    embeddings float [B, D, h, w], labels int64 [B, S, S] (-1 = ignore).
    """
    logits = F.interpolate(head(embeddings), size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, labels, ignore_index=-1)


def lr_at(step: int, total: int, warmup: int, peak: float, start: int = 0) -> float:
    """Linear warm-up (``warmup`` steps from ``start``), then cosine decay to 5 % of the peak at ``total``."""
    if step - start < warmup:
        return min(peak, _cosine(step, total, warmup, peak)) * (step - start + 1) / warmup
    return _cosine(step, total, warmup, peak)


def _cosine(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def resample_state(state: dict[str, torch.Tensor], sam: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Bring toy SAM weights of another patch size to ``sam``'s grid (start a finer SAM from a coarser one).

    Only three kinds of tensors depend on the grid: the patch kernel (resampled, and scaled so a flat
    patch gives the same response), the absolute position embedding (bilinear) and the relative
    position tables of the global-attention blocks (linear); everything else is copied.
    """
    target = sam.state_dict()
    out = {}
    for key, value in state.items():
        want = target[key].shape
        if value.shape == want:
            out[key] = value
        elif key.endswith("patch_embed.proj.weight"):
            scale = (value.shape[-1] / want[-1]) ** 2
            out[key] = F.interpolate(value, size=want[-2:], mode="area") * scale
        elif key.endswith("pos_embed"):
            grid = value.permute(0, 3, 1, 2)  # [1, h, w, C] -> [1, C, h, w]
            grid = F.interpolate(grid, size=want[1:3], mode="bilinear", align_corners=False)
            out[key] = grid.permute(0, 2, 3, 1)
        elif "rel_pos" in key:
            line = F.interpolate(value.T[None], size=want[0], mode="linear", align_corners=True)
            out[key] = line[0].T
        else:
            raise ValueError(f"resample_state: cannot bring {key} from {tuple(value.shape)} to {tuple(want)}")
    return out


def build_toy_sam(args: argparse.Namespace) -> torch.nn.Module:
    """The toy SAM to train: random, or ``--init`` weights (resampled when ``--patch-size`` differs)."""
    spec = dataclasses.replace(SAM_SPECS["toy"], patch_size=args.patch_size or SAM_SPECS["toy"].patch_size)
    sam = build_sam(spec, pretrained=False)
    if args.init is not None:
        load_sam_state_dict(sam, resample_state(read_state_dict(args.init, what="toy SAM"), sam))
    return sam


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    sam = build_toy_sam(args)
    sam.train()
    dim = sam.prompt_encoder.embed_dim
    class_embed = torch.nn.Embedding(len(DESCRIPTIONS), dim)
    torch.nn.init.normal_(class_embed.weight, std=0.5)
    # a linear probe of the image embedding (discarded after training, like the class vectors)
    dense_head = torch.nn.Conv2d(dim, len(DESCRIPTIONS) + 1, kernel_size=1)
    where_proj = torch.nn.Linear(2, dim)  # centroid -> prompt offset (discarded too)
    if args.freeze_encoder:
        sam.image_encoder.requires_grad_(False)
    params = [p for p in sam.parameters() if p.requires_grad] + list(class_embed.parameters())
    if args.where_prob > 0:
        params += list(where_proj.parameters())
    if args.dense_class_weight > 0:
        params += list(dense_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)

    # A resumed run (--start-step) draws clips the first run never saw.
    first_clip = args.start_step * 10
    indices = tqdm(range(first_clip, first_clip + args.pool), desc="initial clip pool")
    pool = [render_clip(i, args.clip_frames, args.seed) for i in indices]
    next_clip = first_clip + args.pool
    heldout = synthetic_samples(args.eval_videos)
    heldout_clips = [render_clip(i, args.clip_frames, seed=args.seed + 1000) for i in range(args.eval_videos)]
    img_size = sam.image_encoder.img_size
    start = time.time()
    stop = args.steps if args.stop_step is None else min(args.stop_step, args.steps)
    bar = tqdm(range(args.start_step, stop), desc="toy SAM", mininterval=30)
    warmup = args.warmup if args.start_step == 0 else args.resume_warmup
    running = None
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps, warmup, args.lr, start=args.start_step)
        # refresh one clip of the pool per step
        pool[int(rng.integers(len(pool)))] = render_clip(next_clip, args.clip_frames, args.seed)
        next_clip += 1

        images = [sample_image(rng, pool) for _ in range(args.batch)]
        pixels, resized = preprocess_for_sam(np.stack([im[0] for im in images]), img_size)
        original = images[0][0].shape[:2]
        with torch.set_grad_enabled(not args.freeze_encoder):
            embeddings = sam.image_encoder(pixels)
        losses = []
        dense = torch.zeros(())
        if args.dense_class_weight > 0:
            grid = sam.prompt_encoder.mask_input_size[0]  # the decoder's low-res grid, 4x the embedding
            labels = torch.stack([label_map(im[1], im[2], resized, grid) for im in images])
            dense = dense_class_loss(dense_head, embeddings, labels)
        for b, (_frame, masks, descriptions, chosen) in enumerate(images):
            # The image encoder dominates the cost, so each image is decoded several times.
            kinds = ["point", "box"] + (["class"] if rng.random() < args.class_prob else [])
            kinds += ["where"] if rng.random() < args.where_prob else []
            emb = embeddings[b : b + 1]
            for kind in kinds:
                if kind == "class":
                    indices, targets = class_targets(rng, masks, descriptions, chosen)
                    prompts = class_embed(torch.tensor(indices))
                    logits = decode_from_embeddings(sam, emb, prompts, resized, original)
                elif kind == "where":
                    targets = masks[chosen]
                    names = torch.tensor([DESCRIPTIONS.index(descriptions[k]) for k in chosen])
                    prompts = class_embed(names) + where_proj(object_centroids(targets))
                    logits = decode_from_embeddings(sam, emb, prompts, resized, original)
                elif kind == "point":
                    targets = masks[chosen]
                    clicks = point_prompts(rng, targets)
                    logits = decode_from_prompts(sam, emb, resized, original, points=clicks)
                else:
                    targets = masks[chosen]
                    logits = decode_from_prompts(sam, emb, resized, original, boxes=box_prompts(rng, targets))
                target = torch.from_numpy(targets).float()
                bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(-1)
                losses.append(bce + dice_loss(logits, target))
        loss = torch.cat(losses).mean() + args.dense_class_weight * dense
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.3f}", refresh=False)
        last = step + 1 == stop
        if (step + 1) % args.eval_every == 0 or last:
            sam.eval()
            result = evaluate(sam, heldout, progress=False)
            class_miou = class_prompt_miou(sam, class_embed, heldout_clips)
            where = ""
            if args.where_prob > 0:
                by_group = where_prompt_miou(sam, class_embed, where_proj, heldout_clips)
                where = " where " + " ".join(f"{g} {v:.1f}" for g, v in by_group.items())
            sam.train()
            minutes = (time.time() - start) / 60
            print(
                f"step {step + 1}: loss {running:.4f}, held-out mIoU point {result['point_miou']:.1f} "
                f"box {result['box_miou']:.1f} class {class_miou:.1f}{where} ({result['objects']} objects), "
                f"{minutes:.1f} min",
                flush=True,
            )
        if (step + 1) % args.save_every == 0 or last:
            sam.eval()
            save_sam(sam, args.out)
            sam.train()
    minutes = (time.time() - start) / 60
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) after {minutes:.1f} min")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pretrain the toy SAM on ReasonVOS-lite frames.")
    parser.add_argument("--steps", type=int, default=2600)
    parser.add_argument("--batch", type=int, default=4, help="images per step (up to 3 objects each)")
    parser.add_argument("--class-prob", type=float, default=0.3, help="share of images with class prompts")
    parser.add_argument(
        "--dense-class-weight",
        type=float,
        default=0.0,
        help="weight of a per-pixel description loss on the image embedding (a linear probe)",
    )
    parser.add_argument(
        "--where-prob",
        type=float,
        default=0.0,
        help="share of images also decoded with one-token prompts naming and placing one object",
    )
    parser.add_argument(
        "--freeze-encoder", action="store_true", help="train the prompt encoder and mask decoder only"
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--pool", type=int, default=64, help="clips kept in memory (one replaced per step)")
    parser.add_argument("--clip-frames", type=int, default=4, help="frames per rendered clip")
    parser.add_argument("--eval-every", type=int, default=400)
    parser.add_argument("--eval-videos", type=int, default=8, help="held-out synthetic videos for monitoring")
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", type=Path, default=None, help="start from these toy SAM weights")
    parser.add_argument("--start-step", type=int, default=0, help="resume the lr schedule at this step")
    parser.add_argument("--stop-step", type=int, default=None, help="stop (and save) early at this step")
    parser.add_argument("--resume-warmup", type=int, default=50, help="warm-up steps of a resumed run")
    parser.add_argument(
        "--patch-size",
        type=int,
        default=None,
        help="ViT patch size (default: the toy spec's); --init weights of another size are resampled",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=TOY_SAM_WEIGHTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train(args)


if __name__ == "__main__":
    main()
