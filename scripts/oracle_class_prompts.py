"""The ceiling of the toy VISA's mask step: SAM prompted with a learnt embedding of the target's *name*.

VISA turns one LLM state into one SAM prompt embedding. However good the LLM, the mask can only be
as good as what SAM's mask decoder makes of a single prompt token that says which object is meant.
This script measures that directly, with no LLM at all: an "oracle" that knows the description of
each expression's target ("red square", "cat") looks up a learnt vector for it and prompts the toy
SAM with it, exactly like VISA's ``[SEG]`` prompt (sparse = the vector, dense = ``no_mask_embed``).
The table of vectors and SAM's mask decoder are trained on generated training videos with VISA's
mask loss (2.0 BCE + 0.5 DICE); the score is the IoU at the frame where each valid expression's
target is largest, the frames ``scripts/train_toy_visa.py`` scores.

It is a ceiling for target-naming only: an expression whose target shares its description with
another object ("the red square moving left" next to a second red square) cannot be told apart by
the name, so the oracle segments both. On the validation split the script therefore splits its IoU
into expressions whose target description is *unique* in the video and *twinned* ones, and by query
kind (the bundled split is regenerated for the kinds). Beside it, at the same frames, the same SAM
(decoder as shipped) told *where* the target is: one click per target object at its deepest pixel
(``center_point``). The gap between the two rows is what a one-token identity prompt costs SAM; for
the oracle's mask the script also reports precision and recall against the ground truth.

    OMP_NUM_THREADS=1 python scripts/oracle_class_prompts.py                       # shipped toy SAM
    OMP_NUM_THREADS=1 python scripts/oracle_class_prompts.py --sam-checkpoint OTHER.safetensors
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from visa_lib.data.reasonvos_lite.generator import SHIPPED_SEEDS, generate_split, regenerate_infos
from visa_lib.data.revos import RevosSplit, load_revos
from visa_lib.metrics import jaccard
from visa_lib.model.sam import (
    TOY_SAM_WEIGHTS,
    build_sam,
    center_point,
    decode_from_embeddings,
    decode_from_prompts,
    encode_frames,
    mask_centroid,
    point_code,
)
from visa_lib.model.visa import build_seg_head
from visa_lib.paths import REASONVOS_LITE
from visa_lib.train.losses import dice_loss, sigmoid_ce_loss
from visa_lib.train.revos_samples import pick_target_frames
from visa_lib.train.target_descriptions import generated_object_descriptions


def target_name(split: RevosSplit, descriptions: dict[str, list[str]], video: str, exp_id: str) -> str:
    """Description of an expression's first target object."""
    obj_ids = split.videos[video].expressions[exp_id].obj_ids
    return descriptions[video][obj_ids[0] - 1]


def twinned(split: RevosSplit, descriptions: dict[str, list[str]], video: str, exp_id: str) -> bool:
    """Whether an object that is not a target shares the description of the first target object."""
    obj_ids = split.videos[video].expressions[exp_id].obj_ids
    name = descriptions[video][obj_ids[0] - 1]
    return any(d == name and k + 1 not in obj_ids for k, d in enumerate(descriptions[video]))


def mean_by(rows: Sequence[dict], key: str, value: str = "iou") -> dict:
    """``{group: {"count", value}}`` of ``rows`` grouped by ``row[key]``, largest group first."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row[value])
    order = sorted(groups, key=lambda g: (-len(groups[g]), str(g)))
    return {str(g): {"count": len(groups[g]), value: float(np.mean(groups[g]))} for g in order}


def click_token(sam, centroid: torch.Tensor, resized: tuple[int, int]) -> torch.Tensor:
    """SAM's embedding of one foreground click at ``centroid`` (x, y in [-1, 1] of the frame): [1,D]."""
    return point_code(sam, centroid, resized)[None] + sam.prompt_encoder.point_embeddings[1].weight


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sam-checkpoint", type=Path, default=TOY_SAM_WEIGHTS)
    parser.add_argument("--train-videos", type=int, default=150, help="generated training videos (seed 0)")
    parser.add_argument("--steps", type=int, default=1500, help="one (expression, frame) per step")
    parser.add_argument("--decoder-lr", type=float, default=1e-4, help="0 keeps the mask decoder frozen")
    parser.add_argument("--table-lr", type=float, default=1e-2)
    parser.add_argument("--head-lr", type=float, default=1e-3, help="lr of the [SEG] head (--where)")
    parser.add_argument(
        "--where",
        action="store_true",
        help="the oracle also knows where the target is: VISA's [SEG] head turns (name vector, target "
        "centroid x, y in [-1, 1]) into the prompt -- what a perfect LLM state holding both would give",
    )
    parser.add_argument(
        "--where-code",
        choices=("linear", "fourier", "fourier-head", "fourier-linear", "fourier-aligned"),
        default="linear",
        help="with --where: 'linear' feeds the centroid to the [SEG] head; 'fourier' adds SAM's own click "
        "token at the centroid (its random Fourier features + the foreground-point embedding) to the name "
        "vector -- the one-token prompt a head that produced SAM's position code would give; "
        "'fourier-head' feeds (name vector, click token) to a fresh [SEG] head, which must pass the code on; "
        "'fourier-linear' does the same through one fresh linear layer instead of the head (no ReLU); "
        "'fourier-aligned' uses a linear layer that starts as name + click token (then trains)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    valid = load_revos(REASONVOS_LITE, "valid")
    root = Path(tempfile.mkdtemp(prefix="oracle_train_"))
    generate_split(root, "train", seed=0, num_videos=args.train_videos)
    train = load_revos(root, "train")
    names = {
        "train": generated_object_descriptions(train, "train", seed=0, progress=False),
        "valid": generated_object_descriptions(valid, "valid", seed=SHIPPED_SEEDS["valid"], progress=False),
    }
    vocabulary = sorted({d for split in names.values() for ds in split.values() for d in ds})
    table = torch.nn.Embedding(len(vocabulary), 64)
    torch.nn.init.normal_(table.weight, std=0.5)
    sam = build_sam("toy", checkpoint=args.sam_checkpoint)
    shipped_sam = build_sam("toy", checkpoint=args.sam_checkpoint)  # its decoder stays as trained for clicks
    groups = [{"params": table.parameters(), "lr": args.table_lr}]
    head = build_seg_head(64 + (64 if args.where_code == "fourier-head" else 2), 64)
    if args.where_code in ("fourier-linear", "fourier-aligned"):
        head = torch.nn.Linear(64 + 64, 64)
    if args.where_code == "fourier-aligned":  # the positive control: the code starts aligned with SAM's
        with torch.no_grad():
            head.weight.copy_(torch.cat([torch.eye(64), torch.eye(64)], 1))
            head.bias.zero_()
    if args.where:
        groups.append({"params": head.parameters(), "lr": args.head_lr})
    if args.decoder_lr > 0:
        groups.append({"params": sam.mask_decoder.parameters(), "lr": args.decoder_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    embeddings: dict[tuple[str, str, int], tuple] = {}

    def sam_image(split: RevosSplit, split_name: str, video: str, t: int):
        key = (split_name, video, t)
        if key not in embeddings:
            with torch.no_grad():
                embeddings[key] = encode_frames(sam, split.read_frame(video, t)[None])
        return embeddings[key]

    def logits_for(split, split_name, video, exp_id, t):
        emb, resized, original = sam_image(split, split_name, video, t)
        index = vocabulary.index(target_name(split, names[split_name], video, exp_id))
        prompt = table(torch.tensor([index]))
        if args.where:
            gt = split.gt_masks(video, exp_id, frames=slice(t, t + 1))[0] > 0
            if args.where_code == "fourier":
                prompt = prompt + click_token(sam, mask_centroid(gt), resized)
            elif args.where_code in ("fourier-head", "fourier-linear", "fourier-aligned"):
                prompt = head(torch.cat([prompt, click_token(sam, mask_centroid(gt), resized)], -1))
            else:
                prompt = head(torch.cat([prompt, mask_centroid(gt)[None]], -1))
        return decode_from_embeddings(sam, emb, prompt, resized, original)

    with_target = [(v, e.exp_id) for v, e in train.expressions() if e.obj_ids]
    for _ in tqdm(range(args.steps), desc="oracle prompts", mininterval=10):
        video, exp_id = with_target[int(rng.integers(len(with_target)))]
        t = int(rng.integers(len(train.videos[video].frames)))
        gt = torch.from_numpy(train.gt_masks(video, exp_id, frames=slice(t, t + 1))[0] > 0).float()[None]
        logits = logits_for(train, "train", video, exp_id, t)
        loss = 2.0 * sigmoid_ce_loss(logits, gt) + 0.5 * dice_loss(logits, gt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def score_rows(split, split_name, items) -> list[dict]:
        rows = []
        for video, exp_id, t in items:
            pred = (logits_for(split, split_name, video, exp_id, t)[0] > 0).numpy()
            gt = split.gt_masks(video, exp_id, frames=slice(t, t + 1))[0] > 0
            hit = float(np.logical_and(pred, gt).sum())
            rows.append(
                {
                    "video": video,
                    "exp_id": exp_id,
                    "frame": t,
                    "type_id": split.videos[video].expressions[exp_id].type_id,
                    "iou": float(jaccard(pred, gt)),
                    "precision": hit / max(float(pred.sum()), 1.0),
                    "recall": hit / max(float(gt.sum()), 1.0),
                }
            )
        return rows

    @torch.no_grad()
    def click_iou(split, split_name, video, exp_id, t) -> float:
        """SAM as shipped, one click per target object visible at frame t; the union of the masks."""
        per_object: dict[int, np.ndarray] = {}
        gt = split.gt_masks(video, exp_id, frames=slice(t, t + 1), decoded=per_object)[0] > 0
        clicks = [center_point(m[0] > 0) for m in per_object.values() if (m[0] > 0).any()]
        emb, resized, original = sam_image(split, split_name, video, t)
        points = (torch.tensor([[c] for c in clicks]), torch.ones(len(clicks), 1, dtype=torch.int64))
        logits = decode_from_prompts(shipped_sam, emb, resized, original, points=points)
        return float(jaccard((logits > 0).any(0).numpy(), gt))

    def summary(rows: list[dict]) -> dict:
        out = {"all": float(np.mean([r["iou"] for r in rows])), "items": len(rows)}
        for t, name in ((0, "referring"), (1, "reasoning")):
            of_type = [r["iou"] for r in rows if r["type_id"] == t]
            if of_type:
                out[name] = float(np.mean(of_type))
        out["precision"] = float(np.mean([r["precision"] for r in rows]))
        out["recall"] = float(np.mean([r["recall"] for r in rows]))
        return out

    valid_rows = score_rows(valid, "valid", pick_target_frames(valid))
    infos = regenerate_infos(valid, "valid", SHIPPED_SEEDS["valid"], progress=False)
    for row in tqdm(valid_rows, desc="clicks", mininterval=10):
        row["click_iou"] = click_iou(valid, "valid", row["video"], row["exp_id"], row["frame"])
        row["kind"] = infos[row["video"]].expressions[int(row["exp_id"])].kind
        row["target"] = "twinned" if twinned(valid, names["valid"], row["video"], row["exp_id"]) else "unique"
    by_target = mean_by(valid_rows, "target")
    for group, click in mean_by(valid_rows, "target", "click_iou").items():
        by_target[group]["click_iou"] = click["click_iou"]
    result = {
        "sam_checkpoint": str(args.sam_checkpoint),
        "where": args.where,
        "where_code": args.where_code if args.where else None,
        "valid_iou": summary(valid_rows),
        "valid_click_iou": float(np.mean([r["click_iou"] for r in valid_rows])),
        "valid_by_target": by_target,
        "valid_by_kind": mean_by(valid_rows, "kind"),
        "train_iou": summary(score_rows(train, "train", pick_target_frames(train, max_items=100))),
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
