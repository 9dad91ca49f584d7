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
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from visa_lib.data.revos import load_revos
from visa_lib.decomposition import ROWS, decomposition_table, format_table
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
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    split = load_revos(args.data_root, args.split)
    kwargs = {}
    if args.visa_weights is not None:
        kwargs["weights"] = args.visa_weights
    if args.sam_weights is not None:
        kwargs["sam_weights"] = args.sam_weights
    pipeline = build_pipeline("toy", sampler="toy", seed=args.seed, **kwargs)
    table = decomposition_table(split, args.data_root, args.split, pipeline, args.out, tuple(args.rows))
    print(f"\n{args.data_root} / {args.split}")
    print(format_table(table))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(table, indent=1))
    return table


if __name__ == "__main__":
    main()
