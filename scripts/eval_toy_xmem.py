"""Score the toy XMem on ReasonVOS-lite: ground-truth mask of the middle frame given, propagated both ways.

Prints J, F and J&F (0-100, VISA-style means over all frames of each expression, then over expressions) for
XMem and for the "copy the given mask to every frame" baseline. Command behind benchmarks/README.md::

    OMP_NUM_THREADS=1 python scripts/eval_toy_xmem.py --split valid --out outputs/xmem_toy_valid.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from visa_lib.data.revos import load_revos
from visa_lib.paths import REASONVOS_LITE, TOY_WEIGHTS
from visa_lib.xmem import XMemTracker
from visa_lib.xmem.evaluation import evaluate_propagation
from visa_lib.xmem.inference import TOY_XMEM_FILE


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=REASONVOS_LITE)
    ap.add_argument("--split", default="valid")
    ap.add_argument("--weights", type=Path, default=TOY_WEIGHTS / TOY_XMEM_FILE)
    ap.add_argument("--size", type=int, default=None, help="working shorter side (default: toy 120)")
    ap.add_argument("--max-expressions", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    split = load_revos(args.data_root, args.split)
    tracker = XMemTracker.toy(args.weights)
    t0 = time.time()
    summary = evaluate_propagation(split, tracker, size=args.size, max_expressions=args.max_expressions)
    table = summary.table()
    table["seconds"] = round(time.time() - t0, 1)  # type: ignore[assignment]
    print(json.dumps(table, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(table, indent=1))
    return table


if __name__ == "__main__":
    main()
