"""Train the toy VISA model on ReasonVOS-lite and write data_samples/weights/toy_visa.safetensors.

Two phases, both with frozen toy CLIP and toy SAM image/prompt encoders (their per-frame features
are cached once):

1. **Warm-up of the toy LLM** (``--warmup-steps``, CE only). The tiny LLaMA starts from random
   weights -- there is no pretrained toy Chat-UniVi -- and a random LLM's state before ``[SEG]`` is
   the same for every query (cosine ~1.0 between queries), so nothing can be learnt from it. Here
   it learns to answer VISA's question with "It is {query}.", i.e. to find the query among the
   visual tokens. This stands in for Chat-UniVi's own pretraining. With the default
   ``--warmup-answer target`` the script then reports how often the warmed-up LLM's greedy answer
   names the target exactly (validation and ``--eval-train-items`` training expressions).
2. **VISA training** (``--steps``), VISA's recipe: answer "It is [SEG]." (random question/answer
   templates), loss 1.0 CE + 2.0 BCE + 0.5 DICE, clips from VISA's sampler (uniform segments,
   target among the references, 5 % negative frames, up to 3 expressions). Trained (``--mode lora``,
   the default): LoRA r 8 / alpha 16 on q/v, the ``[SEG]`` row via embed_tokens and lm_head, the
   ``[SEG]`` head and SAM's mask decoder; the projector is frozen. ``--mode full`` trains every LLM
   weight instead (then the state before ``[SEG]`` tends to collapse to one vector for all queries).

Shipped weights: the defaults -- 150 generated training videos, 400 warm-up steps answering
"It is {description of the target}.", 1000 VISA steps (batch 2, lr 1e-3, decoder lr 1e-4, 4-11
references, LoRA, expressions with a target only), ~10 min on one core, on the 8-px-patch toy SAM
(stage 4 of ``scripts/train_toy_sam.py``): IoU at one target frame over all 95 validation expressions
with a target **0.489** (referring 0.475, reasoning 0.504) against 0.186 for the same model untrained.
For scale: with the 16-px toy SAM of stage 3 the same recipe gave 0.422 (the previous shipped file)
and a learnt prompt per target *name* fed to that SAM (``scripts/oracle_class_prompts.py``, no LLM)
0.44; fed to the shipped 8-px SAM the same oracle reaches 0.595 (train 0.671), so the toy LLM's
``[SEG]`` state, not SAM, now limits the mask.

Runs with the stage-4 (8-px) toy SAM (95 valid expressions, 2026-12-06):

=============================================================================  =====
run                                                                             valid
=============================================================================  =====
defaults (the shipped weights)                                                  0.489
``--warmup-steps 1200``                                                         0.494
``--warmup-steps 2000`` (warm-up names the target 0.62 of the time vs 0.29;     0.468
  2026-12-07, same day the defaults gave 0.480)
defaults on the stage-4 SAM after 100 of its 1500 steps                         0.443
same, warm-up answers also naming where ("coin at the top left"), not kept     0.397
=============================================================================  =====

What made it learn (issue 5) was the toy SAM, not the VISA recipe: after its first two training
stages, SAM's image embedding hardly told objects apart by category, so even the oracle name prompt
scored 0.36 and an untrained VISA's "most salient object" mask 0.35 -- every VISA run below ended
level with or under that. Stage 3 of ``scripts/train_toy_sam.py`` (class prompts on every image)
fixed it; with the same VISA defaults validation went 0.349 -> 0.422.

Runs with the stage-3 toy SAM (95 valid expressions; untrained 0.142 with seed 0, 0.057 with seed 1):

=============================================================================  =====  =====
run                                                                             valid  train
=============================================================================  =====  =====
defaults (the previously shipped weights)                                       0.422  0.538
defaults, ``--seed 1``                                                          0.410
``--with-empty-targets`` (VISA's negatives and no-target expressions too)       0.311
``--train-videos 300 --warmup-steps 600 --steps 2000``                          0.326  0.420
=============================================================================  =====  =====

Earlier runs, with the stage-2 toy SAM (40 valid / 30 train expressions, untrained 0.352 / 0.426 on
the 48 shipped train videos):

=============================================================================  =====  =====
run (all: --decoder-lr 1e-4 unless said)                                        valid  train
=============================================================================  =====  =====
``--warmup-answer query --warmup-steps 300 --steps 2500 --train-videos 0``      0.270  0.449
  (the first shipped recipe, no per-part lr)
``--steps 1500``                                                                0.261  0.533
``--steps 1500 --decoder-lr 0 --head-lr 3e-3`` (decoder frozen)                 0.223  0.453
``--warmup-answer target --warmup-steps 400 --steps 1000``                      0.239  0.505
  + ``--no-with-empty-targets``                                                 0.253  0.523
  + ``--no-with-empty-targets --head-lr 3e-3``                                  0.258  0.452
``--train-videos 150 --warmup-answer target --no-with-empty-targets``            0.349
  ``--warmup-steps 400 --steps 1000`` (today's defaults)
=============================================================================  =====  =====

``--warmup-answer target`` answers "It is {description of the target}." in the warm-up (the
descriptions are regenerated from the ReasonVOS-lite generator), so the state read for ``[SEG]``
must resolve the query; it makes the ``[SEG]`` embeddings of different queries far less alike
(mean cosine 0.34 vs 0.58) and fits the training set better, but generalises only with more
training videos (``--train-videos``; ``--train-videos 0`` uses the 48 shipped ones).

Usage (one core, ~10 min)::

    OMP_NUM_THREADS=1 python scripts/train_toy_visa.py --eval-train-items 0   # writes the shipped weights
    python scripts/train_toy_visa.py --warmup-steps 20 --steps 20 --out /tmp/x.safetensors --eval-items 4

At the end it scores the teacher-forced mask of validation expressions at one target frame
(VISA's evaluation reference rule) for the trained model and for the same model untrained.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from visa_lib.data.reasonvos_lite.generator import SHIPPED_SEEDS
from visa_lib.data.revos import load_revos
from visa_lib.model.build import TOY_VISA_WEIGHTS, build_visa
from visa_lib.model.checkpoints import save_visa_weights
from visa_lib.paths import REASONVOS_LITE
from visa_lib.train import train
from visa_lib.train.revos_samples import FrameFeatureCache, pick_target_frames, target_frame_scores
from visa_lib.train.target_descriptions import generated_object_descriptions, warmup_answer_accuracy


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warmup-steps", type=int, default=400, help="text-only LLM warm-up steps (phase 1)")
    parser.add_argument("--steps", type=int, default=1000, help="VISA optimizer steps (phase 2)")
    parser.add_argument("--batch", type=int, default=2, help="clips per step")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    parser.add_argument(
        "--decoder-lr",
        type=float,
        default=1e-4,
        help="peak lr of SAM's mask decoder in the VISA phase (default: --lr); "
        "lower keeps the pretrained decoder",
    )
    parser.add_argument(
        "--head-lr",
        type=float,
        default=None,
        help="peak lr of the [SEG] head in the VISA phase (default: --lr)",
    )
    parser.add_argument("--warmup", type=int, default=50, help="linear warm-up steps, then linear decay to 0")
    parser.add_argument(
        "--refs",
        type=int,
        nargs=2,
        default=(4, 11),
        metavar=("MIN", "MAX"),
        help="reference frames per clip (VISA: 8 12; fewer is faster on CPU)",
    )
    parser.add_argument(
        "--mode",
        choices=("full", "lora"),
        default="lora",
        help="LLM fine-tuning in the VISA phase (VISA: lora)",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=REASONVOS_LITE,
        help="ReasonVOS-lite root (valid split; train split too unless --train-videos)",
    )
    parser.add_argument(
        "--train-videos",
        type=int,
        default=150,
        help="generate this many training videos with the ReasonVOS-lite generator (seed 0: the shipped 48 "
        "train videos are the first ones) into a temporary folder; 0 = use the shipped train split",
    )
    parser.add_argument(
        "--warmup-answer",
        choices=("target", "query"),
        default="target",
        help="warm-up answer: the target's description (regenerated from the ReasonVOS-lite generator) "
        "or the query itself",
    )
    parser.add_argument(
        "--with-empty-targets",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="train on no-target expressions and negative frames too (VISA's recipe); "
        "--no-with-empty-targets keeps only expressions with a target (what the evaluation scores)",
    )
    parser.add_argument(
        "--negative-prob",
        type=float,
        default=None,
        help="share of clips whose target frame comes from another video, with an empty mask "
        "(default: VISA's 0.05 with --with-empty-targets, else 0)",
    )
    parser.add_argument("--out", type=Path, default=TOY_VISA_WEIGHTS)
    parser.add_argument(
        "--eval-items",
        type=int,
        default=None,
        help="validation expressions to score (default: all with a target)",
    )
    parser.add_argument("--eval-train-items", type=int, default=30, help="training expressions to score")
    parser.add_argument(
        "--random-foundations",
        action="store_true",
        help="random toy CLIP/SAM instead of the shipped ones (pipeline check only)",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="checkpoints and metrics.jsonl (optional)"
    )
    parser.add_argument(
        "--sam-checkpoint", type=Path, default=None, help="toy SAM to build on (default: the shipped one)"
    )
    parser.add_argument(
        "--clip-checkpoint",
        type=Path,
        default=None,
        help="toy CLIP to build on (default: the shipped one; scripts/train_toy_clip.py writes others)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def train_config_overrides(args: argparse.Namespace) -> dict:
    """The script's options as ``TrainConfig`` fields of the "toy" preset (same defaults)."""
    return {
        "text_warmup_steps": args.warmup_steps,
        "steps": args.steps,
        "micro_batch": args.batch,
        "lr": args.lr,
        "decoder_lr": args.decoder_lr,
        "head_lr": args.head_lr,
        "lr_warmup_steps": args.warmup,
        "frames": tuple(args.refs),
        "mode": args.mode,
        "data_root": str(args.data_root),
        "generate_train_videos": args.train_videos,
        "text_warmup_answer": args.warmup_answer,
        "with_empty_targets": args.with_empty_targets,
        "negative_prob": args.negative_prob,
        "pretrained": not args.random_foundations,
        "seed": args.seed,
        "output_dir": str(args.output_dir) if args.output_dir else None,
        "sam_weights": str(args.sam_checkpoint) if args.sam_checkpoint else None,
        "clip_weights": str(args.clip_checkpoint) if args.clip_checkpoint else None,
    }


def mean_iou(scores) -> dict[str, float]:
    by_type = {t: [s.iou for s in scores if s.type_id == t] for t in (0, 1)}
    out = {"all": float(np.mean([s.iou for s in scores]))}
    out.update({("referring" if t == 0 else "reasoning"): float(np.mean(v)) for t, v in by_type.items() if v})
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    valid = load_revos(args.data_root, "valid")
    overrides = train_config_overrides(args)
    start = time.time()
    # Two calls on one model and one sample stream (the same weights as one call): in between, how
    # often the warmed-up LLM names the target, the knowledge the [SEG] phase has to build on.
    warm = train("toy", **{**overrides, "steps": 0, "output_dir": None})
    train_seconds = time.time() - start
    warmup_accuracy = None
    bundled = args.data_root.resolve() == REASONVOS_LITE.resolve()  # its generator seed is known
    if args.warmup_steps and args.warmup_answer == "target" and bundled and not args.random_foundations:

        def naming(split, split_name: str, seed: int, max_items: int | None) -> float:
            items = pick_target_frames(split, max_items)
            descriptions = generated_object_descriptions(split, split_name, seed)
            return warmup_answer_accuracy(warm.model, split, descriptions, items)

        warmup_accuracy = {"valid": naming(valid, "valid", SHIPPED_SEEDS["valid"], args.eval_items)}
        if args.eval_train_items:
            warmup_accuracy["train"] = naming(warm.data.train_split, "train", 0, args.eval_train_items)
        print(f"warm-up answers naming the target: {warmup_accuracy}", flush=True)
    start = time.time()
    run = train("toy", model=warm.model, data=warm.data, **{**overrides, "text_warmup_steps": 0})
    train_seconds += time.time() - start
    model, train_split = run.model, run.data.train_split
    pretrained = not args.random_foundations
    untrained = build_visa(
        "toy",
        weights=None,
        sam_weights=args.sam_checkpoint,
        clip_weights=args.clip_checkpoint,
        pretrained=pretrained,
        check_trained=False,
        seed=args.seed,
    )

    items = pick_target_frames(valid, max_items=args.eval_items)
    trained_scores = target_frame_scores(model, valid, items, cache=FrameFeatureCache(model, valid))
    untrained_scores = target_frame_scores(untrained, valid, items)
    train_items = (
        pick_target_frames(train_split, max_items=args.eval_train_items) if args.eval_train_items else []
    )
    cache = FrameFeatureCache(model, train_split)
    train_trained = target_frame_scores(model, train_split, train_items, cache=cache) if train_items else []
    train_untrained = target_frame_scores(untrained, train_split, train_items) if train_items else []
    visa_steps = [h for h in run.history if h["phase"] == "visa"]
    result = {
        "train_videos": len(train_split.videos),
        "warmup_steps": args.warmup_steps,
        "warmup_answer": args.warmup_answer,
        "with_empty_targets": args.with_empty_targets,
        "negative_prob": args.negative_prob,
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "refs": list(args.refs),
        "mode": args.mode,
        "train_seconds": round(train_seconds, 1),
        "warmup_answer_accuracy": warmup_accuracy,
        "final_loss": {
            k: float(np.mean([h[k] for h in visa_steps[-50:]])) for k in ("total", "ce", "bce", "dice")
        },
        "valid_items": len(items),
        "valid_iou_trained": mean_iou(trained_scores),
        "valid_iou_untrained": mean_iou(untrained_scores),
        "train_items": len(train_items),
        "train_iou_trained": mean_iou(train_trained) if train_items else None,
        "train_iou_untrained": mean_iou(train_untrained) if train_items else None,
        "decoder_lr": args.decoder_lr,
        "head_lr": args.head_lr,
        "random_foundations": bool(args.random_foundations),
        "clip_checkpoint": str(args.clip_checkpoint) if args.clip_checkpoint else None,
    }
    print(json.dumps(result, indent=1), flush=True)
    save_visa_weights(model, args.out, extra=result)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return result


if __name__ == "__main__":
    main()
