"""VISA's inference ablations (paper Table 5's rows) on the toy.

For every expression of a ReasonVOS-lite split the toy VISA segments one target frame, which the toy
XMem propagates both ways; only what the LLM is shown changes between rows:

* **target frame**: the first frame, or the toy text-guided frame sampler's (TFS) frame;
* **references**: none (the video slot holds the target frame alone) or 12 reference frames picked
  **Global** (spread over the video), **Local** (consecutive, around the target) or **Global-Local**
  (half each), as ``visa_lib.data.sampling.reference_frames`` reads the paper.

The toy was trained with VISA's training clips (8-12 uniform-segment references), as VISA was. Only
differences between rows can be compared with the paper's Table 5 (VISA-7B on ReVOS), not values;
the paper's numbers are not printed here, and the tokens-per-frame rows (which need the VISA stage
retrained for each setting) are not part of this script yet.

    OMP_NUM_THREADS=1 python scripts/toy_ablations.py             # all 105 valid expressions, ~25 min
    OMP_NUM_THREADS=1 python scripts/toy_ablations.py --videos 8  # only those videos, scored alone
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from visa_lib.data.revos import load_revos
from visa_lib.data.sampling import reference_frames
from visa_lib.data.video import SplitVideoFrames
from visa_lib.evaluate import evaluate_predictions, write_predictions
from visa_lib.paths import OUTPUTS, REASONVOS_LITE
from visa_lib.pipeline import build_pipeline, run_on_video
from visa_lib.xmem.propagate import propagate

#: (target frame, references, strategy) of each row; strategy None = no references.
ROWS = (
    ("first", 0, None),
    ("first", 12, "global"),
    ("first", 12, "local"),
    ("first", 12, "global_local"),
    ("tfs", 0, None),
    ("tfs", 12, "global"),
    ("tfs", 12, "local"),
    ("tfs", 12, "global_local"),
)


def read_masks(folder: Path, video: str, expression) -> np.ndarray:
    """The PNGs ``write_predictions`` wrote for one expression, bool ``[T,H,W]``."""
    exp_dir = folder / video / expression.exp_id
    return np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 0 for p in sorted(exp_dir.glob("*.png"))])


def row_name(frame: str, refs: int, strategy: str | None) -> str:
    return f"{frame}_{refs}" + (f"_{strategy}" if strategy else "")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=REASONVOS_LITE)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--videos", type=int, default=None, help="only the first N videos")
    parser.add_argument("--visa-weights", type=Path, default=None, help="default: the shipped toy VISA")
    parser.add_argument("--out", type=Path, default=OUTPUTS / "toy_ablations")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler's answers")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    split = load_revos(args.data_root, args.split)
    names = list(split.videos)[: args.videos]
    split.videos = {v: split.videos[v] for v in names}  # --videos: score only the videos that ran
    kwargs = {} if args.visa_weights is None else {"weights": args.visa_weights}
    pipeline = build_pipeline("toy", sampler="toy", seed=args.seed, **kwargs)
    model = pipeline.model
    total = sum(len(split.videos[v].expressions) for v in names)
    for video in tqdm(names, desc="toy ablations", unit="video"):
        meta = split.videos[video]
        exp_ids = list(meta.expressions)
        if not exp_ids:
            continue
        frames = SplitVideoFrames(split, video)
        n = len(meta.frames)
        texts = [meta.expressions[e].text for e in exp_ids]
        # the sampler's frame for every query (the pipeline row itself is toy_report.py's)
        tfs_frames = [r.target_frame for r in run_on_video(frames, texts, pipeline, progress=False)]
        for frame_from, num_refs, strategy in ROWS:
            out = args.out / row_name(frame_from, num_refs, strategy)
            for k, exp_id in enumerate(exp_ids):
                t = 0 if frame_from == "first" else tfs_frames[k]
                # "0 references": the LLM's video slot holds the target frame alone (the model needs one)
                refs = reference_frames(strategy, n, t, num_refs) if strategy else [t]
                ref_pixels = np.stack([frames[i] for i in refs])
                mask = (model.segment(ref_pixels, frames[t], texts[k])[0] > 0).cpu().numpy()
                masks = (
                    propagate(frames, mask, t, pipeline.tracker, direction="both", progress=False)
                    if mask.any()
                    else np.zeros((n, *mask.shape), dtype=bool)
                )
                write_predictions(out, video, exp_id, meta.frames, masks)
    table = {}
    for frame_from, num_refs, strategy in ROWS:
        name = row_name(frame_from, num_refs, strategy)
        result = evaluate_predictions(split, functools.partial(read_masks, args.out / name), progress=False)
        summary = result.summary()
        table[name] = {k: summary[k]["J&F"] for k in ("referring", "reasoning", "overall", "no_target")}
    print(f"\n{args.data_root} / {args.split}, {total} expressions")
    print("| target frame | references | strategy | referring | reasoning | overall J&F | no-target J&F |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for frame_from, num_refs, strategy in ROWS:
        r = table[row_name(frame_from, num_refs, strategy)]
        cells = " | ".join("-" if r[k] is None else f"{r[k]:.2f}" for k in r)
        frame_name = "first frame" if frame_from == "first" else "toy TFS"
        print(f"| {frame_name} | {num_refs} | {strategy or '-'} | {cells} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(table, indent=1))
    return table


if __name__ == "__main__":
    main()
