"""TFS report on ReasonVOS-lite: how often each frame-sampler backend picks a frame showing the target.

For every target-bearing expression of the split (type 0 or 1, non-empty ground truth) each
backend answers VISA's TFS question K = 10 times; the answers are parsed and averaged into ``tp``
and mapped to a frame. Reported per backend: the hit rate (the chosen frame shows the target) and
the mean ``|tp - oracle tp|`` (``visa_lib.tfs.answers.oracle_tp``), as a markdown table.

Usage:
    OMP_NUM_THREADS=1 python scripts/tfs_report.py [--split valid] [--backends toy uniform first_frame oracle]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from visa_lib.data.revos import load_revos
from visa_lib.paths import REASONVOS_LITE
from visa_lib.tfs.answers import NUM_ANSWERS
from visa_lib.tfs.evaluate import evaluate_sampler
from visa_lib.tfs.video_llm import build_frame_sampler


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=REASONVOS_LITE)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--backends", nargs="+", default=["toy", "uniform", "first_frame", "oracle"])
    parser.add_argument("--answers", type=int, default=NUM_ANSWERS, help="K answers per expression")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    split = load_revos(args.root, args.split)
    samplers = [build_frame_sampler(name, seed=args.seed) for name in args.backends]
    reports = evaluate_sampler(split, samplers, num_answers=args.answers)
    print(
        f"\nReasonVOS-lite {args.split}: {reports[0].count} target-bearing expressions, K = {args.answers}, "
        f"seed {args.seed}, {time.time() - start:.0f} s\n"
    )
    print("| backend | chosen frame shows the target | mean abs(tp - oracle tp) |")
    print("|---|---|---|")
    for r in reports:
        print(f"| {r.sampler} | {r.hit_rate:.3f} | {r.mean_tp_error:.3f} |")
    if args.json is not None:
        args.json.write_text(json.dumps([r.row() for r in reports], indent=1))


if __name__ == "__main__":
    main()
