"""Score the toy VISA pipeline end to end on ReasonVOS-lite, with each frame sampler.

For every expression of the split: the sampler picks the target frame, the toy VISA segments it, the toy
XMem propagates both ways (``visa_lib.pipeline``); the PNGs are scored with the ReVOS evaluator. Running
it with the toy video-LLM sampler and with text-blind samplers shows what the text-guided frame sampler
adds end to end (VISA's TFS ablation, on the toy rung).

    OMP_NUM_THREADS=1 python scripts/eval_toy_pipeline.py --samplers toy uniform first_frame
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from visa_lib.data.revos import load_revos
from visa_lib.evaluate import evaluate_revos
from visa_lib.paths import OUTPUTS, REASONVOS_LITE
from visa_lib.pipeline import build_pipeline, write_split_predictions


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=REASONVOS_LITE)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--samplers", nargs="+", default=["toy", "uniform", "first_frame"])
    parser.add_argument("--out", type=Path, default=OUTPUTS / "eval_toy_pipeline")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samplers' answers")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    split = load_revos(args.data_root, args.split)
    rows = {}
    for sampler in args.samplers:
        start = time.time()
        pred = write_split_predictions(
            split, build_pipeline("toy", sampler=sampler, seed=args.seed), args.out / sampler
        )
        seconds = time.time() - start
        summary = evaluate_revos(pred, args.data_root, args.split, progress=False).summary()
        rows[sampler] = {"seconds": round(seconds, 1), **{k: summary[k]["J&F"] for k in summary}}
        print(f"{sampler}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[sampler].items() if v is not None))
    print("\n| sampler | referring J&F | reasoning J&F | overall J&F | no-target J&F | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for sampler, r in rows.items():
        print(
            f"| {sampler} | {r['referring']:.2f} | {r['reasoning']:.2f} | {r['overall']:.2f} | "
            f"{r['no_target']:.2f} | {r['seconds']:.0f} |"
        )
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
