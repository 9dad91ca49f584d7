"""``visa demo``: the end-to-end demo on the bundled ReasonVOS-lite data.

Runs the whole toy VISA pipeline (toy frame sampler -> toy VISA on the target frame -> toy XMem both
ways, :mod:`visa_lib.pipeline`) on every expression of the bundled valid split, scores it with the
ReVOS evaluator next to the simple predictors of :mod:`visa_lib.baselines`, prints the score table
and writes a figure: J&F per subset for each predictor, and one expression's ground truth next to
each predictor's masks. ``--no-visa`` scores the simple predictors only (seconds instead of minutes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from visa_lib.baselines import BASELINES, results_table, score_baselines
from visa_lib.paths import OUTPUTS, REASONVOS_LITE

#: Name of the toy VISA pipeline in the score table.
VISA_NAME = "toy_visa"
#: The predictors the demo scores, from text-blind to oracle.
DEMO_BASELINES = ("all_empty", "largest_moving_object", "random_object", "gt_middle_frame_copied")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, default=REASONVOS_LITE, help="ReVOS-format dataset folder")
    parser.add_argument("--split", default="valid", help="split to evaluate (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=OUTPUTS / "demo", help="output folder")
    parser.add_argument("--workers", type=int, default=None, help="evaluation processes (default: all cores)")
    parser.add_argument("--no-visa", action="store_true", help="skip the toy VISA pipeline (baselines only)")


def _figure(results: dict, split, pred_root: Path, path: Path) -> Path:
    """Bar chart of J&F per subset, plus one reasoning expression drawn for the GT and each predictor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from visa_lib.viz import apply_style, show_image, show_mask

    apply_style()

    subsets = ("referring", "reasoning", "overall", "no_target")
    names = list(results)
    fig = plt.figure(figsize=(13, 6.2))
    grid = fig.add_gridspec(2, len(names) + 1, height_ratios=[1.1, 1])
    ax = fig.add_subplot(grid[0, :])
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        summary = results[name].summary()
        values = [summary[s]["J&F"] or 0.0 for s in subsets]
        bars = ax.bar(np.arange(len(subsets)) + i * width, values, width, label=name)
        ax.bar_label(bars, fmt="%.0f")
    ax.set_xticks(np.arange(len(subsets)) + width * (len(names) - 1) / 2, subsets)
    ax.set_ylabel("J&F (0-100)")
    ax.set_ylim(0, 110)
    ax.legend(ncol=len(names), loc="upper left")
    ax.set_title(
        f"ReasonVOS-lite {split.split}: toy VISA and simple predictors "
        "(random_object and gt_middle_frame_copied are given GT masks)"
    )

    # One reasoning expression, at a frame where the target is visible.
    video, exp = next((v, e) for v, e in split.expressions() if e.type_id == 1)
    gt = split.gt_masks(video, exp.exp_id) > 0
    t = int(np.argmax(gt.reshape(len(gt), -1).sum(1)))
    frame = split.read_frame(video, t)
    frame_name = split.videos[video].frames[t]
    panels = [("ground truth", gt[t])]
    for name in names:
        png = pred_root / name / video / exp.exp_id / f"{frame_name}.png"
        panels.append((name, np.asarray(Image.open(png)) > 0))
    for i, (title, mask) in enumerate(panels):
        ax = fig.add_subplot(grid[1, i])
        show_image(frame, ax, title)
        show_mask(mask, ax)
    fig.suptitle(f'"{exp.text}"  ({video}, frame {t})', y=0.02)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def score_toy_visa(split, data_root: Path, pred_dir: Path, workers: int | None = None):
    """Run the toy VISA pipeline on every expression of ``split``, write its PNGs and score them."""
    import time

    import torch

    from visa_lib.evaluate import evaluate_revos
    from visa_lib.pipeline import build_pipeline, write_split_predictions

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster, and the evaluator uses the other cores
    try:
        start = time.time()
        write_split_predictions(split, build_pipeline("toy"), pred_dir)
        print(
            f"toy VISA pipeline: {len(list(split.expressions()))} expressions in {time.time() - start:.0f} s"
        )
    finally:
        torch.set_num_threads(threads)
    return evaluate_revos(pred_dir, data_root, split.split, workers=workers)


def main(args: argparse.Namespace | None = None) -> int:
    """Score the demo predictors, print the table; write ``scores.md``, ``scores.json``, ``demo.png``."""
    if args is None:
        parser = argparse.ArgumentParser(description=__doc__)
        add_arguments(parser)
        args = parser.parse_args()
    from visa_lib.cli import CliError
    from visa_lib.data.revos import DatasetFormatError, load_revos

    names = [n for n in DEMO_BASELINES if n in BASELINES]
    try:
        split = load_revos(args.data_root, args.split)
    except (FileNotFoundError, DatasetFormatError) as err:
        raise CliError(f"{err}\n(the bundled data: data_samples/reasonvos_lite, see its README)") from None
    scored = names if args.no_visa else [VISA_NAME, *names]
    print(f"ReasonVOS-lite ({args.data_root}), split '{args.split}': scoring {', '.join(scored)}")
    results = {}
    if not args.no_visa:
        results[VISA_NAME] = score_toy_visa(
            split, args.data_root, args.out / "predictions" / VISA_NAME, args.workers
        )
    results.update(score_baselines(args.data_root, args.split, args.out / "predictions", names, args.workers))
    table = results_table(results)
    print("\n" + table + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scores.md").write_text(table + "\n")
    (args.out / "scores.json").write_text(
        json.dumps({name: result.summary() for name, result in results.items()}, indent=2)
    )
    figure = _figure(results, split, args.out / "predictions", args.out / "demo.png")
    print(f"scores: {args.out / 'scores.md'}, {args.out / 'scores.json'}\nfigure: {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
