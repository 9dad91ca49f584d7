"""Train the toy LLaMA-VID-style frame sampler to answer VISA's TFS question.

Target answer: ``percentage_answer(oracle_tp(areas))`` -- the 10 % mark nearest to the centre of
the frames where the queried object is most visible (visible area >= 0.8 x its maximum; see
``visa_lib.tfs.answers.oracle_tp``). Training data: fresh in-memory ReasonVOS-lite videos from
``visa_lib.data.reasonvos_lite.make_video`` (seeds disjoint from the shipped splits) plus the shipped
train split; the frozen toy CLIP tower encodes every frame once. Only the video LLM (projectors,
text-query map, tiny LLaMA) is trained, with cross-entropy on the answer tokens and ``</s>``.

Usage (one core, ~15-20 minutes):
    OMP_NUM_THREADS=1 python scripts/train_toy_tfs.py
(writes data_samples/weights/toy_tfs.safetensors; its metadata holds config, vocabulary and summary)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from visa_lib.data.reasonvos_lite.generator import make_video
from visa_lib.data.revos import load_revos
from visa_lib.model.prompts import IGNORE_INDEX
from visa_lib.model.tokenizer import build_labels, build_toy_tokenizer, tokenizer_vocabulary
from visa_lib.model.vision import build_vision_tower
from visa_lib.paths import REASONVOS_LITE
from visa_lib.tfs.answers import oracle_tp, percentage_answer
from visa_lib.tfs.evaluate import evaluate_sampler
from visa_lib.tfs.samplers import FirstFrameSampler, OracleSampler, UniformSampler
from visa_lib.tfs.video_llm import (
    TOY_TFS_WEIGHTS,
    VideoLLM,
    VideoLLMConfig,
    VideoLLMSampler,
    build_tfs_prompt,
    save_video_llm,
    subsample,
)


def _examples(visual, expressions, areas_of, tokenizer):
    """(visual, query ids, input ids, labels, answer) for each expression with a visible target."""
    out = []
    for text, areas in ((t, areas_of(t_obj)) for t, t_obj in expressions):
        tp = oracle_tp(areas)
        if tp is None:
            continue
        answer = percentage_answer(tp)
        ids, labels = build_labels(tokenizer, build_tfs_prompt(text, answer))
        query = tokenizer(text, add_special_tokens=False).input_ids
        out.append((visual, torch.tensor(query), ids, labels, answer))
    return out


def build_dataset(
    num_videos: int,
    seed: int,
    model: VideoLLM,
    tower,
    tokenizer,
    data_root: Path = REASONVOS_LITE,
    progress: bool = True,
):
    """Encode generated videos and the train split under ``data_root`` into training examples."""
    examples = []
    max_frames = model.config.max_frames
    with torch.no_grad():
        for i in tqdm(range(num_videos), disable=not progress, desc="videos"):
            frames, masks, info = make_video(np.random.default_rng([seed, 1234, i]))
            visual = model.pool_patches(tower.encode_frames(subsample(frames, max_frames))).half()
            sub = subsample(np.arange(len(frames)), max_frames)
            exps = [(e.text, e.objects) for e in info.expressions if e.objects]

            def areas_of(objs, masks=masks, sub=sub):
                return masks[list(objs)].any(0)[sub].reshape(len(sub), -1).sum(1)

            examples += _examples(visual, exps, areas_of, tokenizer)
        split = load_revos(data_root, "train")
        for video, meta in tqdm(split.videos.items(), disable=not progress, desc="train split"):
            frames = np.stack(list(split.iter_frames(video)))
            visual = model.pool_patches(tower.encode_frames(subsample(frames, max_frames))).half()
            sub = subsample(np.arange(len(frames)), max_frames)
            exps = [(e.text, k) for k, e in meta.expressions.items() if e.anno_ids and e.type_id in (0, 1)]

            def areas_of(exp_id, video=video, sub=sub):
                gt = split.gt_masks(video, exp_id)[sub] > 0
                return gt.reshape(len(sub), -1).sum(1)

            examples += _examples(visual, exps, areas_of, tokenizer)
    return examples


def _batch(model: VideoLLM, items):
    """Right-padded inputs_embeds [B, L, H], attention mask [B, L] and labels [B, L]."""
    embeds, labels = [], []
    for visual, query, ids, lab, _ in items:
        video = model.frame_tokens(visual.float(), query)
        emb = model.embed(ids, video)
        slot = ids.index(-200)
        full = lab[:slot] + [IGNORE_INDEX] * len(video) + lab[slot + 1 :]
        embeds.append(emb)
        labels.append(torch.tensor(full))
    length = max(e.shape[0] for e in embeds)
    b, h = len(embeds), embeds[0].shape[1]
    x = torch.zeros(b, length, h)
    mask = torch.zeros(b, length, dtype=torch.long)
    y = torch.full((b, length), IGNORE_INDEX)
    for i, (e, lab) in enumerate(zip(embeds, labels, strict=True)):
        x[i, : len(e)], mask[i, : len(e)], y[i, : len(lab)] = e, 1, lab
    return x, mask, y


def train(model: VideoLLM, examples, steps: int, batch: int, lr: float, seed: int, progress: bool = True):
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.05, 1 - s / steps)
    )
    model.train()
    bar = tqdm(range(steps), disable=not progress, desc="toy TFS")
    for _ in bar:
        items = [examples[int(i)] for i in rng.integers(0, len(examples), batch)]
        x, mask, y = _batch(model, items)
        logits = model.llm(inputs_embeds=x, attention_mask=mask).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), y[:, 1:].flatten(), ignore_index=IGNORE_INDEX)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return model


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--videos", type=int, default=600, help="generated videos (plus the shipped train split)"
    )
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=TOY_TFS_WEIGHTS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--data-root", type=Path, default=REASONVOS_LITE, help="ReVOS-format root with train and valid splits"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.time()
    tokenizer = build_toy_tokenizer()
    tower = build_vision_tower("toy")
    model = VideoLLM(VideoLLMConfig(vocab_size=len(tokenizer)))
    examples = build_dataset(args.videos, args.seed, model, tower, tokenizer, args.data_root)
    answers = [e[4] for e in examples]
    print(f"{len(examples)} examples; answer histogram:", {a: answers.count(a) for a in sorted(set(answers))})
    train(model, examples, args.steps, args.batch, args.lr, args.seed)

    sampler = VideoLLMSampler(model, tokenizer, tower, seed=args.seed)
    valid = load_revos(args.data_root, "valid")
    reports = evaluate_sampler(
        valid, [sampler, UniformSampler(seed=args.seed), FirstFrameSampler(), OracleSampler()]
    )
    summary = {
        "videos": args.videos,
        "examples": len(examples),
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "valid": [r.row() for r in reports],
        "train_seconds": round(time.time() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_video_llm(model, tokenizer_vocabulary(tokenizer), args.out, summary)
    print(json.dumps(summary, indent=1))
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return summary


if __name__ == "__main__":
    main()
