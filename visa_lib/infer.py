"""``visa infer``: segment and track what a text query refers to, in your own video.

    visa infer --video clip.mp4 --text "which animal eats hay?"                  # toy rung, CPU
    visa infer --video frames/ --text "the cat" --text "what moves fastest?" --out outputs/infer
    visa infer --video frames/ --text "..." --config chatunivi-7b --weights VISA_DIR \\
        --clip-weights CLIP_DIR --xmem-weights XMem.pth --sampler uniform --device cuda   # full rung

For each query it writes ``OUT/<NN_query>/masks/<frame>.png`` (0/255 masks, as VISA writes them),
``OUT/<query>/overlay.gif`` (the masks drawn on the video) and ``OUT/summary.json`` (target frame,
the sampler's answers and ``tp``, frames where the object was found), and prints one line per query.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from visa_lib.paths import OUTPUTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", type=Path, required=True, help="a folder of frames or a video file")
    parser.add_argument(
        "--text", action="append", required=True, help="the query (repeat --text for several queries)"
    )
    parser.add_argument(
        "--out", type=Path, default=OUTPUTS / "infer", help="output folder (default: %(default)s)"
    )
    parser.add_argument("--config", default="toy", help="VISA config: toy, chatunivi-7b, chatunivi-13b")
    parser.add_argument(
        "--weights",
        default="toy",
        help="'toy' (the shipped toy weights), a .safetensors file of our format, or a merged VISA / "
        "Chat-UniVi checkpoint folder (full rung)",
    )
    parser.add_argument("--clip-weights", type=Path, help="CLIP ViT-L/14 folder (full rung)")
    parser.add_argument("--sam-weights", type=Path, help="SAM .pth (full rung from a Chat-UniVi folder)")
    parser.add_argument("--xmem-weights", type=Path, help="official XMem.pth (required on the full rung)")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        help="default: bfloat16 for a checkpoint folder, else float32",
    )
    parser.add_argument("--load-in-4bit", action="store_true", help="4-bit LLM (GPU, bitsandbytes)")
    parser.add_argument(
        "--sampler",
        default="toy",
        choices=("toy", "uniform", "first_frame"),
        help="frame sampler picking the target frame (default: the toy video LLM)",
    )
    parser.add_argument("--target-frame", type=int, help="skip the sampler and segment this frame first")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps (default: %(default)s)")
    parser.add_argument("--no-gif", action="store_true", help="do not write overlay.gif")


def query_folder_name(text: str, index: int) -> str:
    """A file-system-safe folder name for a query: ``"00_which_animal_eats_hay"``."""
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "query"
    return f"{index:02d}_{slug}"


def _pipeline_kwargs(args: argparse.Namespace) -> dict:
    """``build_pipeline`` keywords: the same names as the flags (``--clip-weights`` -> ``clip_weights``)."""
    from visa_lib.cli import CliError

    kwargs: dict = {}
    if args.weights != "toy":
        weights = Path(args.weights)
        if not weights.exists():
            raise CliError(
                f"--weights {weights}: no such file or folder (give 'toy', a .safetensors or a folder)"
            )
        kwargs["weights"] = weights
    for name in ("clip_weights", "sam_weights", "xmem_weights", "dtype"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    if args.load_in_4bit:
        kwargs["load_in_4bit"] = True
    return kwargs


def main(args: argparse.Namespace) -> int:
    from visa_lib.cli import CliError
    from visa_lib.data.video import VideoFrames
    from visa_lib.evaluate import write_predictions
    from visa_lib.pipeline import build_pipeline, run_on_video
    from visa_lib.viz import overlay, save_gif

    texts = [" ".join(t.split()) for t in args.text]
    if any(not t for t in texts):
        raise CliError("--text: a query is empty; give the words to look for, e.g. --text 'the red square'")
    try:
        frames = VideoFrames(args.video)
    except ValueError as err:
        raise CliError(f"--video: {err}") from None
    sampler = None if args.target_frame is not None else args.sampler
    try:
        pipeline = build_pipeline(args.config, sampler=sampler, device=args.device, **_pipeline_kwargs(args))
        print(f"{frames}: {len(texts)} quer{'y' if len(texts) == 1 else 'ies'}, VISA config {args.config!r}")
        results = run_on_video(frames, texts, pipeline, target_frame=args.target_frame)
    except (ValueError, KeyError, FileNotFoundError, ImportError) as err:
        raise CliError(str(err)) from None

    frame_names = [f"{t:05d}" for t in range(len(frames))]
    summary = []
    for k, result in enumerate(results):
        folder = args.out / query_folder_name(result.text, k)
        write_predictions(args.out, folder.name, "masks", frame_names, result.masks)
        found = np.flatnonzero(result.masks.reshape(len(frames), -1).any(1))
        if not args.no_gif:
            save_gif(
                folder / "overlay.gif", (overlay(frames[t], result.masks[t]) for t in range(len(frames)))
            )
        tp = "given" if result.tp is None else f"tp {result.tp:.2f}"
        where = f"found in {len(found)}/{len(frames)} frames" if result.found else "no target found"
        print(f"  {result.text!r}: target frame {result.target_frame} ({tp}), {where} -> {folder}")
        summary.append(
            {
                "text": result.text,
                "folder": str(folder),
                "target_frame": result.target_frame,
                "tp": result.tp,
                "answers": result.answers,
                "reference_frames": result.reference_frames,
                "frames_with_object": found.tolist(),
            }
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(
        json.dumps({"video": str(args.video), "queries": summary}, indent=1)
    )
    print(f"summary: {args.out / 'summary.json'}")
    return 0
