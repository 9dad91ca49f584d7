"""``visa infer``: segment and track what a text query refers to, in your own video.

    visa infer --video clip.mp4 --text "which animal eats hay?"                  # toy rung, CPU
    visa infer --video frames/ --text "the cat" --text "what moves fastest?" --out outputs/infer
    visa infer --video frames/ --text "..." --config chatunivi-7b --weights VISA_DIR \\
        --clip-weights CLIP_DIR --xmem-weights XMem.pth --sampler uniform --device cuda   # full rung

For each query it writes ``OUT/<NN_query>/masks/<frame>.png`` (0/255 masks, as VISA writes them),
``OUT/<NN_query>/overlay.gif`` (or ``.mp4``: the masks drawn on the video), ``OUT/<NN_query>/query.json``
(target frame, the sampler's answers and ``tp``, frames where the object was found) and keeps
``OUT/summary.json`` listing the finished queries, and prints one line per query.

Memory does not grow with the video: frames are decoded a block at a time, each mask is written as XMem
yields it and the overlay is encoded frame by frame from the written masks. A query is written into
``OUT/.<NN_query>.partial/`` and renamed when complete, so a query folder is always whole: Ctrl-C keeps
every finished query, and a re-run either refuses a folder that already holds results, skips finished
queries (``--resume``) or replaces them (``--overwrite``). Every argument is checked before a model loads
(docs/robustness.md).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from visa_lib.paths import OUTPUTS, restore_replaced, swap_in

OVERLAYS = ("gif", "mp4", "none")
QUERY_FILE = "query.json"
SUMMARY_FILE = "summary.json"
PARTIAL_SUFFIX = ".partial"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model options shared by ``visa infer`` and ``visa predict`` (read by :func:`pipeline_kwargs`)."""
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", type=Path, required=True, help="a folder of frames or a video file")
    parser.add_argument(
        "--text", action="append", required=True, help="the query (repeat --text for several queries)"
    )
    parser.add_argument(
        "--out", type=Path, default=OUTPUTS / "infer", help="output folder (default: %(default)s)"
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--sampler",
        default="toy",
        choices=("toy", "uniform", "first_frame"),
        help="frame sampler picking the target frame (default: the toy video LLM)",
    )
    parser.add_argument("--target-frame", type=int, help="skip the sampler and segment this frame first")
    parser.add_argument(
        "--xmem-size",
        type=int,
        help="shorter side XMem works at (default: the tracker's, 480 official / 120 toy; -1 = native); "
        "time and memory grow with its square",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps (default: %(default)s)")
    parser.add_argument(
        "--overlay", choices=OVERLAYS, default="gif", help="overlay animation per query (default: gif)"
    )
    parser.add_argument("--no-gif", action="store_true", help="same as --overlay none")
    again = parser.add_mutually_exclusive_group()
    again.add_argument(
        "--resume", action="store_true", help="keep the queries an earlier run into --out finished"
    )
    again.add_argument(
        "--overwrite", action="store_true", help="replace query folders that already hold results"
    )


def query_folder_name(text: str, index: int) -> str:
    """A file-system-safe folder name for a query: ``"00_which_animal_eats_hay"``."""
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "query"
    return f"{index:02d}_{slug}"


# ------------------------------------------------------------------------------------ argument checks


def check_device(name: str) -> str:
    """``name`` if PyTorch can run on it here; else :class:`~visa_lib.cli.CliError` saying what to use."""
    import torch

    from visa_lib.cli import CliError

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CliError(f"--device {name!r}: not a device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CliError(f"--device {name}: PyTorch sees no CUDA GPU on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CliError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s) (cuda:0 ...)"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise CliError(f"--device {name}: Apple MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise CliError(f"--device {name}: {device.type} is not supported; use cpu, cuda, cuda:N or mps")
    return name


def _check_weights(weights: str) -> Path | None:
    """``None`` for ``"toy"``, else the checked path of a ``.safetensors`` file or a checkpoint folder."""
    from visa_lib.cli import CliError

    if weights == "toy":
        return None
    path = Path(weights)
    if not path.exists():
        raise CliError(f"--weights {path}: no such file or folder (give 'toy', a .safetensors or a folder)")
    if path.is_dir():
        return path
    if path.suffix != ".safetensors":
        raise CliError(
            f"--weights {path}: not a .safetensors file; give 'toy', a .safetensors file of visa_lib's "
            "format or a merged VISA / Chat-UniVi checkpoint folder"
        )
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError) as err:
        message = f"--weights {path}: not a readable .safetensors file ({err}); fetch it again"
        raise CliError(message) from None
    return path


def pipeline_kwargs(args: argparse.Namespace) -> dict:
    """``build_pipeline`` keywords, the same names as the flags (``--clip-weights`` -> ``clip_weights``);
    every path is checked here, before any model loads."""
    from visa_lib.cli import CliError

    kwargs: dict = {}
    weights = _check_weights(args.weights)
    if weights is not None:
        kwargs["weights"] = weights
    for name in ("clip_weights", "sam_weights", "xmem_weights"):
        path = getattr(args, name)
        if path is not None:
            if not path.exists():
                raise CliError(f"--{name.replace('_', '-')} {path}: no such file or folder")
            kwargs[name] = path
    if args.dtype is not None:
        kwargs["dtype"] = args.dtype
    if args.load_in_4bit:
        kwargs["load_in_4bit"] = True
    return kwargs


def prepare_out(out: Path) -> Path:
    """Create ``out`` and prove it is writable; a one-line :class:`~visa_lib.cli.CliError` otherwise."""
    from visa_lib.cli import CliError

    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out}: is a file, not a folder; give a folder for the results")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        reason = err.strerror or err
        raise CliError(f"--out {out}: cannot write there ({reason}); choose a writable folder") from None
    return out


def plan_queries(out: Path, names: list[str], resume: bool, overwrite: bool) -> list[int]:
    """The indices of the queries to run; refuses a query folder that already holds results.

    A finished query folder holds ``query.json`` (it is renamed into place only when complete). With
    ``resume`` finished queries are skipped; with ``overwrite`` they are redone and replaced when the new
    result is complete. Left-over ``.partial`` folders of an interrupted run are removed, and a result an
    interrupted ``--overwrite`` renamed aside is put back.
    """
    from visa_lib.cli import CliError

    for stale in out.glob(f".*{PARTIAL_SUFFIX}"):
        shutil.rmtree(stale, ignore_errors=True)
    restore_replaced(out)  # an earlier result an interrupted --overwrite left aside
    todo, taken = [], []
    for index, name in enumerate(names):
        folder = out / name
        holds = folder.exists() and any(folder.iterdir()) if folder.is_dir() else folder.exists()
        if not holds or overwrite:
            todo.append(index)
        elif resume and (folder / QUERY_FILE).is_file():
            continue
        else:
            taken.append(name)
    if taken:
        raise CliError(
            f"--out {out}: {', '.join(taken)} already hold(s) results of an earlier run; pass --resume to "
            "keep finished queries, --overwrite to replace them, or another --out"
        )
    return todo


# -------------------------------------------------------------------------------------------- writing


def _write_query(out: Path, name: str, frames, target, pipeline, overlay_format: str) -> dict:
    """Track one query, writing each mask as it comes, then the overlay; rename into place when whole."""
    from tqdm.auto import tqdm

    from visa_lib.data.revos import write_json
    from visa_lib.evaluate import read_mask_png, write_mask_png
    from visa_lib.pipeline import track_target
    from visa_lib.viz import overlay, save_animation

    final, partial = out / name, out / f".{name}{PARTIAL_SUFFIX}"
    shutil.rmtree(partial, ignore_errors=True)
    try:  # from the mkdir on: a Ctrl-C at any point removes the folder again
        (partial / "masks").mkdir(parents=True)
        found = []
        steps = track_target(frames, target, pipeline)
        for index, mask in tqdm(steps, total=len(frames), desc=f"XMem {name}", leave=False):
            write_mask_png(partial / "masks" / f"{index:05d}.png", mask)
            if mask.any():
                found.append(index)
        if overlay_format != "none":
            pictures = (
                overlay(frames[t], read_mask_png(partial / "masks" / f"{t:05d}.png") > 0)
                for t in range(len(frames))
            )
            save_animation(partial / f"overlay.{overlay_format}", pictures)
        entry = {
            "text": target.text,
            "folder": str(final),
            "target_frame": target.target_frame,
            "tp": target.tp,
            "answers": target.answers,
            "reference_frames": target.reference_frames,
            "frames_with_object": sorted(found),
        }
        write_json(partial / QUERY_FILE, entry, indent=1)
        swap_in(partial, final)  # --overwrite: the earlier result goes only once the new one is there
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return entry


def _write_summary(out: Path, video: Path, names: list[str]) -> Path:
    """``OUT/summary.json``: the finished queries of this run, in order (read back from their folders)."""
    import json

    from visa_lib.data.revos import write_json

    queries = [
        json.loads((out / n / QUERY_FILE).read_text()) for n in names if (out / n / QUERY_FILE).is_file()
    ]
    write_json(out / SUMMARY_FILE, {"video": str(video), "queries": queries}, indent=1)
    return out / SUMMARY_FILE


def main(args: argparse.Namespace) -> int:
    from visa_lib.cli import CliError
    from visa_lib.data.video import VideoFrames
    from visa_lib.pipeline import build_pipeline, segment_target_frames

    texts = [" ".join(t.split()) for t in args.text]
    if any(not t for t in texts):
        raise CliError("--text: a query is empty; give the words to look for, e.g. --text 'the red square'")
    overlay_format = "none" if args.no_gif else args.overlay
    # Every argument is checked before any model loads.
    device = check_device(args.device)
    kwargs = pipeline_kwargs(args)
    out = prepare_out(args.out)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            frames = VideoFrames(args.video)
    except ValueError as err:
        raise CliError(f"--video: {err}") from None
    for warning in caught:
        print(f"visa infer: warning: {warning.message}", file=sys.stderr)
    if args.target_frame is not None and not -len(frames) <= args.target_frame < len(frames):
        raise CliError(f"--target-frame {args.target_frame}: the video has {len(frames)} frames")
    if args.xmem_size is not None and args.xmem_size != -1 and args.xmem_size < 16:
        raise CliError(f"--xmem-size {args.xmem_size}: give -1 (native) or at least 16 pixels")
    names = [query_folder_name(t, k) for k, t in enumerate(texts)]
    todo = plan_queries(out, names, args.resume, args.overwrite)
    print(f"{frames}: {len(texts)} quer{'y' if len(texts) == 1 else 'ies'}, VISA config {args.config!r}")
    if len(todo) < len(texts):
        print(f"  resuming: {len(texts) - len(todo)} finished quer(y/ies) kept")
    if todo:
        sampler = None if args.target_frame is not None else args.sampler
        try:
            pipeline = build_pipeline(args.config, sampler=sampler, device=device, **kwargs)
            if args.xmem_size is not None:
                pipeline.tracker.memory = pipeline.tracker.memory.with_(size=args.xmem_size)
            targets = segment_target_frames(
                frames, [texts[k] for k in todo], pipeline, target_frame=args.target_frame
            )
        except (ValueError, KeyError, FileNotFoundError, ImportError) as err:
            raise CliError(str(err)) from None
        for k, target in zip(todo, targets, strict=True):
            try:
                entry = _write_query(out, names[k], frames, target, pipeline, overlay_format)
                _write_summary(out, args.video, names)
            except OSError as err:
                message = f"--out {out}: writing failed ({err}); free space or choose another folder"
                raise CliError(message) from None
            except KeyboardInterrupt:
                # Ctrl-C between a folder's rename and the summary: the summary still lists every whole folder
                _write_summary(out, args.video, names)
                raise
            tp = "given" if target.tp is None else f"tp {target.tp:.2f}"
            count = len(entry["frames_with_object"])
            where = f"found in {count}/{len(frames)} frames" if target.found else "no target found"
            frame = target.target_frame
            print(f"  {target.text!r}: target frame {frame} ({tp}), {where} -> {out / names[k]}")
    print(f"summary: {_write_summary(out, args.video, names)}")
    return 0
