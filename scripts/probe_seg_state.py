"""What the toy VISA's ``[SEG]`` state knows about WHERE its target is: linear probes, held out.

A one-token SAM prompt localises its object when it carries SAM's own click code of the object's
position (``scripts/oracle_class_prompts.py --where --where-code fourier``). This script asks whether a
trained toy VISA gets there: on generated training videos it fits ridge-regression probes from the
``[SEG]`` hidden state (the head's input) and from the prompt (the head's output) to the target's
centroid ``(x, y)`` and to SAM's click code at that centroid (its random Fourier features), then
reports R^2 of the probes on the validation split (1 = read back exactly, <= 0 = not at all). The
same probes, fitted to the one-hot description of the target ("red square"), give how often the
state names the target (argmax; beside the share of the most common description).
Teacher-forced prompt and references as in VISA's evaluation, at the frame where the target is largest.

    OMP_NUM_THREADS=1 python scripts/probe_seg_state.py                     # shipped toy VISA
    OMP_NUM_THREADS=1 python scripts/probe_seg_state.py --visa V.safetensors --clip C.safetensors
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from tqdm.auto import tqdm

from visa_lib.data.reasonvos_lite.generator import SHIPPED_SEEDS, generate_split
from visa_lib.data.revos import RevosSplit, load_revos
from visa_lib.model.build import TOY_VISA_WEIGHTS, build_visa
from visa_lib.model.sam import mask_centroid, point_code
from visa_lib.model.visa import VisaModel
from visa_lib.paths import REASONVOS_LITE
from visa_lib.train.revos_samples import FrameFeatureCache, evaluation_forward, pick_target_frames
from visa_lib.train.target_descriptions import generated_object_descriptions


@torch.no_grad()
def collect(
    model: VisaModel,
    split: RevosSplit,
    names: dict[str, list[str]],
    vocabulary: list[str],
    max_items: int | None,
) -> dict[str, torch.Tensor]:
    """``{"state" [N,H], "prompt" [N,D], "xy" [N,2], "code" [N,D], "name" [N,V]}`` (one-hot target
    description) for expressions with a target, at their largest-target frame."""
    cache = FrameFeatureCache(model, split)
    rows: dict[str, list[torch.Tensor]] = {"state": [], "prompt": [], "xy": [], "code": [], "name": []}
    for video, exp_id, t in tqdm(pick_target_frames(split, max_items=max_items), desc="[SEG] states"):
        out = evaluation_forward(model, split, video, exp_id, t, cache)
        xy = mask_centroid(split.gt_masks(video, exp_id, frames=slice(t, t + 1))[0] > 0)
        rows["state"].append(out.seg_hidden[0].float())
        rows["prompt"].append(out.seg_embeddings[0].float())
        rows["xy"].append(xy)
        rows["code"].append(point_code(model.sam, xy, cache.sam_image(video, t).resized))
        name = names[video][split.videos[video].expressions[exp_id].obj_ids[0] - 1]
        rows["name"].append(
            torch.nn.functional.one_hot(torch.tensor(vocabulary.index(name)), len(vocabulary))
        )
    return {k: torch.stack(v).double() for k, v in rows.items()}


def fit_ridge(x: torch.Tensor, y: torch.Tensor, ridge: float):
    """A ridge regression (with an unpenalised intercept) of ``y`` [N,*] on ``x`` [N,*]: a predictor."""

    def design(v: torch.Tensor) -> torch.Tensor:
        return torch.cat([v, torch.ones(len(v), 1, dtype=v.dtype)], 1)

    a = design(x)
    penalty = ridge * torch.eye(a.shape[1], dtype=a.dtype)
    penalty[-1, -1] = 0
    weights = torch.linalg.solve(a.T @ a + penalty, a.T @ y)
    return lambda v: design(v) @ weights


def ridge_r2(
    x_fit: torch.Tensor, y_fit: torch.Tensor, x: torch.Tensor, y: torch.Tensor, ridge: float
) -> float:
    """R^2 on ``(x, y)`` of a ridge regression (with intercept) fitted on ``(x_fit, y_fit)``; [N,*] each."""
    residual = ((fit_ridge(x_fit, y_fit, ridge)(x) - y) ** 2).sum()
    return float(1 - residual / ((y - y.mean(0)) ** 2).sum())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--visa", type=Path, default=TOY_VISA_WEIGHTS, help="toy VISA weights")
    parser.add_argument(
        "--clip", type=Path, default=None, help="toy CLIP it was trained on (default: shipped)"
    )
    parser.add_argument("--sam", type=Path, default=None, help="toy SAM it was trained on (default: shipped)")
    parser.add_argument("--train-videos", type=int, default=150, help="generated videos (seed 0) to fit on")
    parser.add_argument(
        "--fit-items", type=int, default=400, help="training expressions to fit the probes on"
    )
    parser.add_argument("--eval-items", type=int, default=None, help="validation expressions (default: all)")
    parser.add_argument("--ridge", type=float, default=1.0)
    args = parser.parse_args(argv)
    model = build_visa("toy", weights=args.visa, clip_weights=args.clip, sam_weights=args.sam).eval()
    root = Path(tempfile.mkdtemp(prefix="probe_train_"))
    generate_split(root, "train", seed=0, num_videos=args.train_videos)
    train, valid = load_revos(root, "train"), load_revos(REASONVOS_LITE, "valid")
    names = {
        "train": generated_object_descriptions(train, "train", seed=0, progress=False),
        "valid": generated_object_descriptions(valid, "valid", seed=SHIPPED_SEEDS["valid"], progress=False),
    }
    vocabulary = sorted({d for split in names.values() for ds in split.values() for d in ds})
    fit = collect(model, train, names["train"], vocabulary, args.fit_items)
    held = collect(model, valid, names["valid"], vocabulary, args.eval_items)
    result = {"visa": str(args.visa), "fit_items": len(fit["xy"]), "eval_items": len(held["xy"])}
    truth = held["name"].argmax(1)
    result["name_majority"] = float((truth == fit["name"].sum(0).argmax()).double().mean())
    for source in ("state", "prompt"):
        for target in ("xy", "code"):
            result[f"{source}_to_{target}_r2"] = ridge_r2(
                fit[source], fit[target], held[source], held[target], args.ridge
            )
        guess = fit_ridge(fit[source], fit["name"], args.ridge)(held[source]).argmax(1)
        result[f"{source}_name_accuracy"] = float((guess == truth).double().mean())
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
