"""VISA's inference ablations (paper Table 5's rows) on the toy.

For every expression of a ReasonVOS-lite split the toy VISA segments one target frame, which the toy
XMem propagates both ways; only what the LLM is shown changes between rows:

* **target frame**: the first frame, or the toy text-guided frame sampler's (TFS) frame;
* **references**: none (the video slot holds the target frame alone) or 12 reference frames picked
  **Global** (spread over the video), **Local** (consecutive, around the target) or **Global-Local**
  (half each), as ``visa_lib.data.sampling.reference_frames`` reads the paper.

The toy was trained with VISA's training clips (4-11 uniform-segment references), as VISA was (8-12).

**Tokens per frame** (``--tokens-per-frame``): the toy's counterparts of the paper's 56 / 112 / 256
visual tokens per frame are 14 / 28 / 56 (half, the same and twice the toy's 16 + 8 + 4 clusters, as
112 = 64 + 32 + 16). The VISA stage is retrained for each with the shipped recipe
(``scripts/train_toy_visa.py``'s defaults, ~10 min each on one core; 28 is the shipped model itself)
and scored by the real pipeline (toy TFS, VISA's 11-reference evaluation rule, toy XMem).

Only differences between rows can be compared with the paper (VISA-7B on ReVOS), not values.

    OMP_NUM_THREADS=1 python scripts/toy_ablations.py             # all 105 valid expressions, ~25 min
    OMP_NUM_THREADS=1 python scripts/toy_ablations.py --videos 8  # only those videos, scored alone
    OMP_NUM_THREADS=1 python scripts/toy_ablations.py --skip-table5 --tokens-per-frame 14 28 56
"""

from __future__ import annotations

import argparse
import functools
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from visa_lib.data.revos import load_revos
from visa_lib.data.sampling import reference_frames
from visa_lib.data.video import SplitVideoFrames
from visa_lib.decomposition import decomposition_table
from visa_lib.evaluate import evaluate_predictions, write_predictions
from visa_lib.model.build import build_visa
from visa_lib.model.configs import get_config
from visa_lib.paths import OUTPUTS, REASONVOS_LITE
from visa_lib.pipeline import VisaPipeline, build_pipeline, run_on_video
from visa_lib.train import train
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


#: Clusters per merge level for each toy tokens-per-frame setting (the paper's 56 / 112 / 256).
TOKEN_SETTINGS = {14: (8, 4, 2), 28: (16, 8, 4), 56: (32, 16, 8)}
#: The paper's tokens per frame each toy setting stands for.
PAPER_TOKENS = {14: 56, 28: 112, 56: 256}
#: The toy setting the shipped weights use.
SHIPPED_TOKENS = 28


#: VISA-7B's overall J&F on ReVOS for Table 5's rows, as a third-party summary of the paper lists them
#: (papernotes.org; not checked against the PDF, which could not be read here).
PAPER_TABLE5 = {
    ("first", 0, None): 42.6,
    ("first", 12, "global"): 44.5,
    ("first", 12, "local"): 44.9,
    ("first", 12, "global_local"): 45.0,
    ("tfs", 0, None): 44.3,
    ("tfs", 12, "global"): 46.7,
    ("tfs", 12, "local"): 46.3,
    ("tfs", 12, "global_local"): 46.9,
}
TABLE5_HEADER = (
    "| target frame | references | strategy | referring | reasoning | overall J&F | no-target J&F "
    "| paper overall J&F |\n|---|---:|---|---:|---:|---:|---:|---:|"
)


def read_masks(folder: Path, video: str, expression) -> np.ndarray:
    """The PNGs ``write_predictions`` wrote for one expression, bool ``[T,H,W]``."""
    exp_dir = folder / video / expression.exp_id
    return np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 0 for p in sorted(exp_dir.glob("*.png"))])


def row_name(frame: str, refs: int, strategy: str | None) -> str:
    return f"{frame}_{refs}" + (f"_{strategy}" if strategy else "")


def table5_rows(split, pipeline: VisaPipeline, out: Path) -> dict[str, dict[str, float | None]]:
    """Paper Table 5's rows: the toy VISA shown other target frames and references, J&F per type."""
    model = pipeline.model
    for video in tqdm(list(split.videos), desc="Table 5 rows", unit="video"):
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
            row_out = out / row_name(frame_from, num_refs, strategy)
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
                write_predictions(row_out, video, exp_id, meta.frames, masks)
    table = {}
    for frame_from, num_refs, strategy in ROWS:
        name = row_name(frame_from, num_refs, strategy)
        result = evaluate_predictions(split, functools.partial(read_masks, out / name), progress=False)
        summary = result.summary()
        table[name] = {k: summary[k]["J&F"] for k in ("referring", "reasoning", "overall", "no_target")}
    return table


def tokens_rows(
    split,
    data_root: Path,
    split_name: str,
    pipeline: VisaPipeline,
    settings: list[int],
    out: Path,
    **train_overrides,
) -> dict[int, dict[str, float | None]]:
    """The VISA stage retrained for each tokens-per-frame setting, scored by the real pipeline.

    ``train_overrides`` change the shipped recipe (``TrainConfig`` fields; the tests shorten it).
    """
    table = {}
    for tokens in settings:
        model = pipeline.model
        if tokens != SHIPPED_TOKENS:
            set_seed(0)  # as train("toy") seeds before it builds the model
            config = get_config("toy", cluster_nums=TOKEN_SETTINGS[tokens])
            model = build_visa(config, weights=None, check_trained=False, seed=0)
            model = train("toy", model=model, **train_overrides).model.eval()
        run = replace(pipeline, model=model)
        row = decomposition_table(split, data_root, split_name, run, out / f"tokens_{tokens}", ("tfs:visa",))
        row = row["tfs:visa"]
        table[tokens] = {k: row[k] for k in ("referring", "reasoning", "overall", "no_target")}
    return table


def cells(row: dict[str, float | None]) -> str:
    return " | ".join("-" if v is None else f"{v:.2f}" for v in row.values())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=REASONVOS_LITE)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--videos", type=int, default=None, help="only the first N videos")
    parser.add_argument("--visa-weights", type=Path, default=None, help="default: the shipped toy VISA")
    parser.add_argument("--out", type=Path, default=OUTPUTS / "toy_ablations")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler's answers")
    parser.add_argument("--skip-table5", action="store_true", help="only the tokens-per-frame rows")
    parser.add_argument(
        "--tokens-per-frame",
        type=int,
        nargs="*",
        choices=sorted(TOKEN_SETTINGS),
        default=[],
        help="retrain the VISA stage with these visual tokens per frame (28 = the shipped toy) and score it",
    )
    parser.add_argument(
        "--train-steps",
        type=int,
        nargs=3,
        default=None,
        metavar=("WARMUP", "VISA", "VIDEOS"),
        help="shorten the retraining: text warm-up steps, VISA steps, generated training videos "
        "(default: the shipped recipe, 400 1000 150)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    split = load_revos(args.data_root, args.split)
    names = list(split.videos)[: args.videos]
    split.videos = {v: split.videos[v] for v in names}  # --videos: score only the videos that ran
    kwargs = {} if args.visa_weights is None else {"weights": args.visa_weights}
    pipeline = build_pipeline("toy", sampler="toy", seed=args.seed, **kwargs)
    total = sum(len(split.videos[v].expressions) for v in names)
    result: dict[str, dict] = {}
    print(f"\n{args.data_root} / {args.split}, {total} expressions")
    if not args.skip_table5:
        result["table5"] = table5_rows(split, pipeline, args.out)
        print(TABLE5_HEADER)
        for frame_from, num_refs, strategy in ROWS:
            frame_name = "first frame" if frame_from == "first" else "toy TFS"
            row = result["table5"][row_name(frame_from, num_refs, strategy)]
            paper = PAPER_TABLE5.get((frame_from, num_refs, strategy))
            print(f"| {frame_name} | {num_refs} | {strategy or '-'} | {cells(row)} | {paper} |")
    if args.tokens_per_frame:
        overrides = {}
        if args.train_steps:
            keys = ("text_warmup_steps", "steps", "generate_train_videos")
            overrides = dict(zip(keys, args.train_steps, strict=True))
        tokens = tokens_rows(
            split, args.data_root, args.split, pipeline, args.tokens_per_frame, args.out, **overrides
        )
        result["tokens_per_frame"] = tokens
        # The paper gives no numbers here, only that 112 and 256 are level and 56 clearly worse.
        print("\n| toy tokens per frame (paper) | referring | reasoning | overall J&F | no-target J&F |")
        print("|---|---:|---:|---:|---:|")
        for n, row in tokens.items():
            print(f"| {n} ({PAPER_TOKENS[n]}) | {cells(row)} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
