"""The toy VISA end to end on a ReasonVOS-lite split, and where its error comes from.

Prints :func:`visa_lib.decomposition.decomposition_table`: the real pipeline (toy TFS sampler ->
toy VISA on the target frame -> toy XMem both ways) next to the rows that replace the sampler's frame
by the frame where the target is largest and/or VISA's mask by the ground truth, each scored with
VISA's ReVOS metrics (J&F per expression type, R, and the mean IoU of the mask on the target frame).

    OMP_NUM_THREADS=1 python scripts/toy_report.py                       # shipped weights, valid
    python -m visa_lib.data.reasonvos_lite --out /tmp/seed7 --split valid --seed 7 --videos 12
    OMP_NUM_THREADS=1 python scripts/toy_report.py --data-root /tmp/seed7   # a split never trained on

The ground-truth rows do not depend on the VISA weights (only on the sampler and XMem);
``--rows tfs:visa oracle:visa`` scores new VISA weights alone.

For the VISA rows it also prints the target-frame IoU per query kind (name, position, motion,
knowledge, ...): ReVOS files do not store the kind, so the videos are regenerated from the generator
seed (known for the bundled splits; ``--generator-seed 7`` for the split above, plus
``--generator-frames MIN MAX`` when it was written with other frame counts).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from visa_lib.data.reasonvos_lite.generator import FRAMES_MAX, FRAMES_MIN, SHIPPED_SEEDS, regenerate_infos
from visa_lib.data.revos import load_revos
from visa_lib.decomposition import (
    ROWS,
    format_kind_table,
    format_table,
    iou_by_kind,
    score_decomposition,
    write_decomposition,
)
from visa_lib.paths import OUTPUTS, REASONVOS_LITE
from visa_lib.pipeline import build_pipeline


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=REASONVOS_LITE, help="ReVOS-format split root")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--visa-weights", type=Path, default=None, help="default: the shipped toy VISA")
    parser.add_argument("--sam-weights", type=Path, default=None, help="default: the shipped toy SAM")
    parser.add_argument("--out", type=Path, default=OUTPUTS / "toy_report")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler's answers")
    parser.add_argument(
        "--generator-seed",
        type=int,
        default=None,
        help="seed the split was generated with, for the per-kind table (default: known for the bundled "
        "splits, else no per-kind table)",
    )
    parser.add_argument(
        "--generator-frames",
        type=int,
        nargs=2,
        default=(FRAMES_MIN, FRAMES_MAX),
        metavar=("MIN", "MAX"),
        help="frame range the split was generated with",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    split = load_revos(args.data_root, args.split)
    kwargs = {}
    if args.visa_weights is not None:
        kwargs["weights"] = args.visa_weights
    if args.sam_weights is not None:
        kwargs["sam_weights"] = args.sam_weights
    pipeline = build_pipeline("toy", sampler="toy", seed=args.seed, **kwargs)
    generator_seed = args.generator_seed
    if generator_seed is None and args.data_root.resolve() == REASONVOS_LITE.resolve():
        generator_seed = SHIPPED_SEEDS.get(args.split)
    kinds = None
    if generator_seed is not None:  # checked before the long run: a wrong seed fails here
        infos = regenerate_infos(split, args.split, generator_seed, *args.generator_frames)
        kinds = {(v, str(e)): x.kind for v, info in infos.items() for e, x in enumerate(info.expressions)}
    scores = write_decomposition(split, pipeline, args.out, tuple(args.rows))
    table = score_decomposition(args.out, args.data_root, args.split, scores)
    print(f"\n{args.data_root} / {args.split}")
    print(format_table(table))
    summary = {"table": table}
    visa_rows = [r for r in args.rows if r.endswith(":visa")]
    if kinds is not None and visa_rows:
        by_kind = {r: iou_by_kind(scores[r], kinds) for r in visa_rows}
        print("\ntarget-frame IoU of VISA's mask by query kind")
        print(format_kind_table(by_kind))
        summary["iou_by_kind"] = by_kind
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
