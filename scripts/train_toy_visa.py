"""Train the toy VISA model on ReasonVOS-lite and write data_samples/weights/toy_visa.safetensors.

What is trained (visa_lib.train.trainable, mode "full"): every weight of the tiny LLaMA (it starts
from random weights: there is no pretrained toy Chat-UniVi to put LoRA adapters on), its
``[SEG]`` row and lm_head, the projector, the ``[SEG]`` head and SAM's mask decoder. Frozen: the
toy CLIP tower and SAM's image and prompt encoders (their features are cached once per frame).
Loss: 1.0 CE + 2.0 BCE + 0.5 DICE. Samples: VISA's clip sampler (uniform segments, target among
the references, 5 % negative frames, up to 3 expressions, random question/answer templates).

Usage (one core, ~10-15 min)::

    OMP_NUM_THREADS=1 python scripts/train_toy_visa.py            # writes the shipped weights
    python scripts/train_toy_visa.py --steps 50 --out /tmp/x.safetensors --eval-items 8   # smoke run

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
from tqdm.auto import tqdm

from visa_lib.data.revos import load_revos
from visa_lib.model.checkpoints import save_visa_weights
from visa_lib.model.visa import TOY_VISA_WEIGHTS, build_visa
from visa_lib.paths import REASONVOS_LITE
from visa_lib.train.revos_samples import (
    FrameFeatureCache,
    draw_training_sample,
    pick_target_frames,
    target_frame_scores,
)
from visa_lib.train.step import training_step
from visa_lib.train.trainable import merge_lora, prepare_for_training


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1200, help="optimizer steps")
    parser.add_argument("--batch", type=int, default=2, help="clips per step")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    parser.add_argument("--warmup", type=int, default=50, help="linear warm-up steps, then linear decay to 0")
    parser.add_argument(
        "--refs",
        type=int,
        nargs=2,
        default=(4, 8),
        metavar=("MIN", "MAX"),
        help="reference frames per clip (VISA: 8 12; fewer is faster on CPU)",
    )
    parser.add_argument("--mode", choices=("full", "lora"), default="full", help="LLM fine-tuning mode")
    parser.add_argument("--data-root", type=Path, default=REASONVOS_LITE)
    parser.add_argument("--out", type=Path, default=TOY_VISA_WEIGHTS)
    parser.add_argument("--eval-items", type=int, default=40, help="validation expressions to score")
    parser.add_argument(
        "--random-foundations",
        action="store_true",
        help="random toy CLIP/SAM instead of the shipped ones (pipeline check only)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def mean_iou(scores) -> dict[str, float]:
    by_type = {t: [s.iou for s in scores if s.type_id == t] for t in (0, 1)}
    out = {"all": float(np.mean([s.iou for s in scores]))}
    out.update({("referring" if t == 0 else "reasoning"): float(np.mean(v)) for t, v in by_type.items() if v})
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train = load_revos(args.data_root, "train")
    valid = load_revos(args.data_root, "valid")
    pretrained = not args.random_foundations

    model = build_visa("toy", weights=None, pretrained=pretrained, check_trained=False, seed=args.seed)
    untrained = build_visa("toy", weights=None, pretrained=pretrained, check_trained=False, seed=args.seed)
    counts = prepare_for_training(model, mode=args.mode, train_projector=args.mode == "full")
    print("trainable parameters:", counts, flush=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.95))

    def schedule(step: int) -> float:  # VISA's WarmupDecayLR shape
        if step < args.warmup:
            return (step + 1) / args.warmup
        return max(0.0, (args.steps - step) / max(1, args.steps - args.warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    cache = FrameFeatureCache(model, train)
    start = time.time()
    history = []
    bar = tqdm(range(args.steps), desc="train toy VISA", mininterval=10)
    for step in bar:
        batch = [draw_training_sample(cache, rng, frame_range=tuple(args.refs)) for _ in range(args.batch)]
        logs = training_step(model, batch, optimizer, grad_clip=1.0, scheduler=scheduler)
        history.append(logs)
        if step % 25 == 0 or step == args.steps - 1:
            recent = {k: float(np.mean([h[k] for h in history[-25:]])) for k in logs}
            bar.set_postfix({k: f"{v:.3f}" for k, v in recent.items()})
            print(f"step {step}: " + " ".join(f"{k}={v:.4f}" for k, v in recent.items()), flush=True)
    train_seconds = time.time() - start

    merge_lora(model)  # no-op in "full" mode; folds the adapters in "lora" mode
    model.eval()
    items = pick_target_frames(valid, max_items=args.eval_items)
    valid_cache = FrameFeatureCache(model, valid)
    trained_scores = target_frame_scores(model, valid, items, cache=valid_cache)
    untrained_scores = target_frame_scores(untrained, valid, items)
    result = {
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "refs": list(args.refs),
        "mode": args.mode,
        "train_seconds": round(train_seconds, 1),
        "final_loss": {k: float(np.mean([h[k] for h in history[-50:]])) for k in history[-1]},
        "valid_items": len(items),
        "valid_iou_trained": mean_iou(trained_scores),
        "valid_iou_untrained": mean_iou(untrained_scores),
        "random_foundations": bool(args.random_foundations),
    }
    print(json.dumps(result, indent=1), flush=True)
    save_visa_weights(model, args.out, extra=result)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return result


if __name__ == "__main__":
    main()
