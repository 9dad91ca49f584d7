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

Probes on the vision side say whether the position was there to read in the first place:
``patches_pooled_to_xy_r2`` -- ridge from the CLIP patch tokens of the target frame averaged under the
target's mask (what perfect attention to the target would see); ``patches_attention_to_xy_r2`` and
``merged_attention_to_xy_r2`` -- one learnt attention step from the target's description over the
target frame's 256 patch tokens / its merged tokens (what the LLM receives), read out linearly,
trained on the same items. The learnt attention over-fits those items; ``prototype`` readers learn
nothing but the mean pooled token of each description and a linear map:
``patches_prototype_grid_to_xy_r2`` -- patch grid positions weighted by each patch's similarity to the
description's prototype (can the target be *found*?); ``patches_prototype_content_to_xy_r2`` and
``merged_prototype_content_to_xy_r2`` -- the same weights on the tokens themselves (does what the
LLM receives *say* where the found target is?).

    OMP_NUM_THREADS=1 python scripts/probe_seg_state.py                     # shipped toy VISA
    OMP_NUM_THREADS=1 python scripts/probe_seg_state.py --visa V.safetensors --clip C.safetensors
    OMP_NUM_THREADS=1 python scripts/probe_seg_state.py --merge 32,16,8 64,32,16   # other merges too
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
from visa_lib.model.merge import spatial_merge
from visa_lib.model.sam import mask_centroid, point_code
from visa_lib.model.visa import VisaModel
from visa_lib.model.vision import patch_positions
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
    description), ``"patches" [N,256,C]`` (the target frame's patch tokens), ``"pooled" [N,C]`` (them
    averaged under the target's mask) and ``"merged" [N,n,C]`` (its merged tokens) for expressions
    with a target, at their largest-target frame."""
    cache = FrameFeatureCache(model, split)
    keys = ("state", "prompt", "xy", "code", "name", "patches", "pooled", "merged")
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    tower = model.vision_tower
    for video, exp_id, t in tqdm(pick_target_frames(split, max_items=max_items), desc="[SEG] states"):
        out = evaluation_forward(model, split, video, exp_id, t, cache)
        mask = split.gt_masks(video, exp_id, frames=slice(t, t + 1))[0] > 0
        xy = mask_centroid(mask)
        patches = tower(tower.preprocess(cache.frame(video, t)))[0].float()  # [256,C]
        cover = tower.patch_coverage(mask).to(patches.device)
        rows["pooled"].append(cover @ patches / cover.sum().clamp(min=1e-6))
        rows["patches"].append(patches)
        rows["merged"].append(cache.tokens(video, [t])[0].float())
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
    return r_squared(fit_ridge(x_fit, y_fit, ridge)(x), y)


def r_squared(prediction: torch.Tensor, y: torch.Tensor) -> float:
    """R^2 of ``prediction`` for ``y`` ([N,*] each; <= 0: no better than the mean)."""
    return float(1 - ((prediction - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())


def attention_probe_r2(
    fit: dict[str, torch.Tensor],
    held: dict[str, torch.Tensor],
    steps: int = 600,
    lr: float = 1e-2,
    seed: int = 0,
) -> float:
    """R^2 on ``held`` of one learnt attention step from the description over ``tokens``, read out to xy.

    ``fit`` and ``held`` hold ``"tokens" [N,n,C]``, ``"name" [N,V]`` (one-hot) and ``"xy" [N,2]``.

    query = Linear(one-hot name), scores = Linear(tokens) . query / sqrt(C), xy = Linear(softmax-weighted
    tokens); AdamW (weight decay 0.1) on the mean squared error of ``fit``, full batch.
    """
    generator = torch.Generator().manual_seed(seed)
    width = fit["tokens"].shape[-1]

    def layer(n_in: int, n_out: int) -> torch.nn.Linear:
        lin = torch.nn.Linear(n_in, n_out)
        with torch.no_grad():
            lin.weight.normal_(0, n_in**-0.5, generator=generator)
            lin.bias.zero_()
        return lin

    query, key, read = layer(fit["name"].shape[1], width), layer(width, width), layer(width, 2)
    params = [*query.parameters(), *key.parameters(), *read.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.1)

    def predict(data: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens, q = data["tokens"].float(), query(data["name"].float())  # [N,n,C], [N,C]
        weights = torch.softmax((key(tokens) @ q[:, :, None]).squeeze(-1) / width**0.5, -1)  # [N,n]
        return read((weights[:, :, None] * tokens).sum(1))

    for _ in range(steps):
        loss = ((predict(fit) - fit["xy"].float()) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return r_squared(predict(held).double(), held["xy"])


def prototype_weights(
    fit: dict[str, torch.Tensor], data: dict[str, torch.Tensor], key: str, temperature: float
) -> torch.Tensor:
    """Softmax weights [N,n] over ``data[key]`` [N,n,C]: each token's cosine similarity to its item's
    *prototype*, the mean of ``fit["pooled"]`` over the ``fit`` items with the same description (a
    description ``fit`` never saw gets a zero prototype and so uniform weights)."""
    names = fit["name"]
    prototypes = names.T @ fit["pooled"] / names.sum(0).clamp(min=1)[:, None]  # [V,C]
    query = data["name"] @ prototypes  # [N,C]
    similarity = torch.nn.functional.cosine_similarity(data[key], query[:, None, :], dim=-1)
    return torch.softmax(similarity / temperature, -1)


def prototype_probe_r2(
    fit: dict[str, torch.Tensor],
    held: dict[str, torch.Tensor],
    key: str,
    read: str,
    temperature: float = 0.05,
) -> float:
    """R^2 on ``held`` of a reader with nothing learnt but a prototype per description and a linear map.

    It weights the tokens ``key`` (``"patches"`` or ``"merged"``) by :func:`prototype_weights`, then
    ``read="grid"`` averages the patches' grid positions with those weights (where the tokens *are*;
    the LLM never sees this), ``read="content"`` averages the tokens themselves (what the tokens *say*
    about where they are, all the LLM can use); a ridge regression maps the average to the centroid.
    """

    def features(data: dict[str, torch.Tensor]) -> torch.Tensor:
        weights = prototype_weights(fit, data, key, temperature)  # [N,n]
        if read == "content":
            return (weights[:, :, None] * data[key]).sum(1)
        return weights @ patch_positions(weights.shape[1])[0].to(weights.dtype)

    return ridge_r2(features(fit), fit["xy"], features(held), held["xy"], 1e-3 if read == "grid" else 1.0)


def merged_patches(patches: torch.Tensor, clusters: tuple[int, ...], ks: tuple[int, ...]) -> torch.Tensor:
    """Chat-UniVi's spatial merge of ``patches`` [N,256,C] with other clusters per level: [N,sum,C]."""
    generator = torch.Generator().manual_seed(0)
    return spatial_merge(patches.float(), clusters, ks, generator=generator).to(patches.dtype)


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
    parser.add_argument("--attention-steps", type=int, default=600, help="attention probe's training steps")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=[],
        metavar="N,N,N",
        help="also merge the target frame's patches with these DPC-KNN clusters per level (e.g. 32,16,8 "
        "64,32,16) and score the prototype content reader on them (the model's own merge is 'merged')",
    )
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
    pooled = (fit["pooled"], fit["xy"], held["pooled"], held["xy"])
    result["patches_pooled_to_xy_r2"] = ridge_r2(*pooled, args.ridge)
    result["patches_prototype_grid_to_xy_r2"] = prototype_probe_r2(fit, held, "patches", "grid")
    for tokens in ("patches", "merged"):
        result[f"{tokens}_prototype_content_to_xy_r2"] = prototype_probe_r2(fit, held, tokens, "content")
    for setting in args.merge:
        clusters = tuple(int(n) for n in setting.split(","))
        ks = model.config.cluster_ks[: len(clusters)]  # the model's k per level
        for data in (fit, held):
            data[setting] = merged_patches(data["patches"], clusters, ks)
        result[f"merged_{sum(clusters)}_prototype_content_to_xy_r2"] = prototype_probe_r2(
            fit, held, setting, "content"
        )
    for tokens in ("patches", "merged"):
        result[f"{tokens}_attention_to_xy_r2"] = attention_probe_r2(
            *({"tokens": d[tokens], "name": d["name"], "xy": d["xy"]} for d in (fit, held)),
            steps=args.attention_steps,
        )
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
