"""``visa predict``: run VISA on every expression of a benchmark split and write what ``visa eval`` reads.

    visa predict revos   --data-root ReVOS      --split valid   --out pred/revos      # toy rung, all cores
    visa predict revos   --data-root ReVOS      --split valid   --out pred/revos \\
        --config chatunivi-7b --weights VISA_DIR --clip-weights CLIP --xmem-weights XMem.pth \\
        --tp-file meta_expressions_valid__llamavid.json --device cuda
    accelerate launch -m visa_lib.cli predict mevis --data-root MeViS --split valid_u --out pred/mevis ...

Output (VISA's layout, docs/predict.md)::

    OUT/<video>/<exp_id>/<frame>.png     0/255 masks, every frame of every expression
    OUT/target_frames.json               {"<video>/<exp_id>": {target_frame, tp, answers, found}}
    OUT/.predict/<video>/<exp_id>.json   one record per finished expression (the resume marker)

**Resumable.** An expression's PNGs are written into a temporary folder that is renamed into place in
one step, and its record is written after that; an expression counts as done only when its record
exists. Run the same command again after an interruption: finished expressions are skipped, a
half-written one is redone. Use a new ``--out`` when you change the model or the sampler.

**Parallel.** On the CPU, ``--workers N`` processes (default: every core) each build the pipeline once
and take whole videos from a queue. Under ``accelerate launch`` (one process per GPU) the videos are
split between the processes with accelerate's ``PartialState.split_between_processes``. The frame
sampler seeds each query from its own text, so the result does not depend on how videos are split.

**Robust.** A video whose frames cannot be read is reported at the end (and in the exit code 1);
the other videos are still predicted.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visa_lib.paths import restore_replaced, swap_in

#: The benchmarks ``visa predict`` knows and their default splits (VISA's validation splits).
DATASETS = {"revos": "valid", "mevis": "valid_u", "davis17": "valid"}
#: Hidden folder of per-expression records inside the output folder.
RECORDS = ".predict"
#: The summary of every expression's frame-sampler decision.
TARGET_FRAMES = "target_frames.json"


@dataclass
class PredictReport:
    """What one ``predict_split`` call did.

    Attributes:
        pred_dir (Path): the output folder.
        predicted (int): expressions predicted by this call.
        skipped (int): expressions already finished by an earlier call.
        failed (dict[str, str]): ``{video: reason}`` for videos that could not be read.
    """

    pred_dir: Path
    predicted: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.predicted} expressions predicted, {self.skipped} already done -> {self.pred_dir}"]
        if self.failed:
            lines.append(f"{len(self.failed)} video(s) could not be read (run again after fixing them):")
            lines += [f"  {video}: {reason}" for video, reason in sorted(self.failed.items())]
        return "\n".join(lines)


# -------------------------------------------------------------------------------------------- the split


def load_queries(dataset: str, data_root: str | Path, split: str | None = None):
    """The videos and expressions of a split, WITHOUT its ground truth (MeViS ``valid`` has none).

    Arguments:
        dataset (str): ``"revos"``, ``"mevis"`` or ``"davis17"`` (the layouts ``visa eval`` reads).
        data_root (str | Path): the dataset folder.
        split (str | None): default: VISA's validation split of the dataset.
    Returns:
        RevosSplit: metadata and lazy frames; ``mask_dict`` is empty.
    """
    from visa_lib.data.formats import META_FILE, _split_dir
    from visa_lib.data.revos import FRAME_DIR, RevosSplit, find_meta_file, parse_meta, read_json

    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    split = split or DATASETS[dataset]
    root = Path(data_root)
    if dataset == "revos":
        meta_path, folder = find_meta_file(root, split), root
        videos = parse_meta(read_json(meta_path), meta_path)
    else:
        folder = _split_dir(root, split)
        meta_path = folder / META_FILE
        videos = parse_meta(read_json(meta_path), meta_path, require_type=False, require_size=False)
    return RevosSplit(folder, split, videos, {}, None, meta_path, None, folder / FRAME_DIR)


def _record_path(pred_dir: Path, video: str, exp_id: str) -> Path:
    return pred_dir / RECORDS / video / f"{exp_id}.json"


def pending_expressions(split, video: str, pred_dir: Path) -> list[str]:
    """Expression ids of ``video`` without a finished record in ``pred_dir``.

    An earlier result that an interrupted ``--overwrite`` left renamed aside is put back first.
    """
    restore_replaced(pred_dir / video)
    return [
        e
        for e in split.videos[video].expressions
        if not (_record_path(pred_dir, video, e).is_file() and (pred_dir / video / e).is_dir())
    ]


# ------------------------------------------------------------------------------------------- one video


def predict_video(split, video: str, pipeline, pred_dir: str | Path, resume: bool = True) -> int:
    """Predict the (pending) expressions of one video; each is written atomically, then recorded.

    Arguments:
        split (RevosSplit): the split (``load_queries`` or ``load_revos``).
        video (str): a video of the split.
        pipeline (VisaPipeline): from :func:`visa_lib.pipeline.build_pipeline`.
        pred_dir (str | Path): the output folder.
        resume (bool): skip expressions already recorded (False: predict all again).
    Returns:
        int: the number of expressions predicted.
    Raises:
        OSError / ValueError: the video's frames cannot be read (nothing of that video is recorded).
    """
    from visa_lib.data.revos import write_json
    from visa_lib.data.video import SplitVideoFrames
    from visa_lib.evaluate import write_mask_png
    from visa_lib.pipeline import segment_target_frames, track_target

    pred_dir = Path(pred_dir)
    meta = split.videos[video]
    exp_ids = pending_expressions(split, video, pred_dir) if resume else list(meta.expressions)
    if not exp_ids:
        return 0
    frames = SplitVideoFrames(split, video)
    texts = [meta.expressions[e].text for e in exp_ids]
    keys = [f"{video}/{e}" for e in exp_ids]
    targets = segment_target_frames(frames, texts, pipeline, keys=keys)
    for exp_id, target in zip(exp_ids, targets, strict=True):
        final = pred_dir / video / exp_id
        temporary = pred_dir / video / f".{exp_id}.partial"
        shutil.rmtree(temporary, ignore_errors=True)  # left over from an interrupted run
        try:  # from the mkdir on, so that a Ctrl-C right after it leaves nothing either
            temporary.mkdir(parents=True)
            # Each mask is written as XMem yields it: memory does not grow with the video.
            for index, mask in track_target(frames, target, pipeline):
                write_mask_png(temporary / f"{meta.frames[index]}.png", mask)
            _record_path(pred_dir, video, exp_id).unlink(missing_ok=True)
            swap_in(temporary, final)  # the PNGs appear in one step; an earlier result goes only then
        except BaseException:  # Ctrl-C included: no half-written expression is left behind
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        record = {
            "target_frame": target.target_frame,
            "tp": target.tp,
            "answers": target.answers,
            "found": target.found,
        }
        write_json(_record_path(pred_dir, video, exp_id), record)
    return len(exp_ids)


def write_target_frames(split, pred_dir: str | Path) -> Path:
    """Gather the per-expression records into ``pred_dir/target_frames.json`` (split order)."""
    from visa_lib.data.revos import read_json, write_json

    pred_dir = Path(pred_dir)
    log = {}
    for video, exp in split.expressions():
        path = _record_path(pred_dir, video, exp.exp_id)
        if path.is_file():
            log[f"{video}/{exp.exp_id}"] = read_json(path)
    write_json(pred_dir / TARGET_FRAMES, log, indent=1)
    return pred_dir / TARGET_FRAMES


# ------------------------------------------------------------------------------------------- the workers

_WORKER: dict[str, Any] = {}


def _init_worker(split, pipeline_spec: dict, pred_dir: Path, resume: bool) -> None:
    import torch

    from visa_lib.pipeline import build_pipeline

    torch.set_num_threads(1)  # one process per core: each runs single-threaded
    _WORKER.update(split=split, pred_dir=pred_dir, resume=resume)
    try:
        _WORKER["pipeline"] = build_pipeline(**pipeline_spec)
    except Exception as err:  # raised from the first task: a failing initializer makes Pool respawn forever
        _WORKER["error"] = err


def _worker_task(video: str) -> tuple[str, int, str | None]:
    if "error" in _WORKER:
        raise _WORKER["error"]
    return _run_video(_WORKER["split"], video, _WORKER["pipeline"], _WORKER["pred_dir"], _WORKER["resume"])


def _run_video(split, video, pipeline, pred_dir, resume) -> tuple[str, int, str | None]:
    """``(video, expressions predicted, None)``, or ``(video, 0, reason)`` when its frames cannot be read."""
    try:
        return video, predict_video(split, video, pipeline, pred_dir, resume), None
    except (OSError, ValueError) as err:
        return video, 0, f"{type(err).__name__}: {err}"


def _distributed_state():
    """accelerate's ``PartialState`` under ``accelerate launch`` with several processes, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())  # gloo between CPU processes, else NCCL


def predict_split(
    split,
    pred_dir: str | Path,
    pipeline=None,
    *,
    pipeline_spec: dict | None = None,
    workers: int | None = 1,
    videos: Sequence[str] | None = None,
    resume: bool = True,
    progress: bool = True,
) -> PredictReport:
    """Predict every expression of ``split`` into ``pred_dir`` (VISA's PNG layout + ``target_frames.json``).

    Arguments:
        split (RevosSplit): from :func:`load_queries` (or ``load_revos`` ...).
        pred_dir (str | Path): output folder.
        pipeline (VisaPipeline | None): a built pipeline, used in this process (``workers`` must be 1).
        pipeline_spec (dict | None): ``build_pipeline`` keyword arguments; each worker process builds its
            own pipeline from them (default: the toy pipeline).
        workers (int | None): CPU processes (None: every core; 1: this process). Under
            ``accelerate launch`` every launched process takes its share of the videos instead.
        videos (Sequence[str] | None): only these videos (default: all).
        resume (bool): skip finished expressions.
        progress (bool): a tqdm bar over expressions, with ETA.
    Returns:
        PredictReport: counts and the videos that could not be read.
    """
    from tqdm.auto import tqdm

    from visa_lib.pipeline import build_pipeline

    pred_dir = Path(pred_dir)
    names = list(split.videos) if videos is None else list(videos)
    unknown = [v for v in names if v not in split.videos]
    if unknown:
        raise ValueError(f"predict_split: videos {unknown[:3]} are not in split {split.split!r}")
    if pipeline is not None and pipeline_spec is not None:
        raise ValueError("predict_split: give pipeline= or pipeline_spec=, not both")
    spec = dict(pipeline_spec or {})
    state = _distributed_state()
    if state is not None:  # accelerate launch: one process per GPU, the videos split between them
        spec["device"] = state.device
        workers = 1
        with state.split_between_processes(names) as mine:
            names = list(mine)
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"predict_split: workers must be >= 1, got {workers}")
    if pipeline is not None and workers > 1:
        raise ValueError("predict_split: several workers build their own pipeline; pass pipeline_spec=")
    pred_dir.mkdir(parents=True, exist_ok=True)
    report = PredictReport(pred_dir)
    todo = []
    for video in names:
        pending = len(pending_expressions(split, video, pred_dir)) if resume else None
        total = len(split.videos[video].expressions)
        report.skipped += total - (total if pending is None else pending)
        if pending != 0:
            todo.append(video)
    workers = min(workers, max(len(todo), 1))
    if todo and pipeline is None and workers == 1:  # a model is loaded only when something is left to do
        pipeline = build_pipeline(**spec)
    if pipeline is not None:
        sampler = pipeline.sampler
    elif todo:  # the workers build their own pipelines; the parent only needs the sampler's coverage check
        from visa_lib.tfs import build_frame_sampler

        choice = spec.get("sampler", "toy")
        sampler = build_frame_sampler(choice, seed=spec.get("seed", 0)) if isinstance(choice, str) else choice
    else:
        sampler = None
    if sampler is not None:  # e.g. a --tp-file that lacks some expressions: one error naming them
        sampler.check_queries([f"{v}/{e}" for v in todo for e in split.videos[v].expressions])
    pool = None
    if workers > 1:  # spawn: a clean interpreter per worker (forking a process that ran torch can hang)
        pool = mp.get_context("spawn").Pool(workers, _init_worker, (split, spec, pred_dir, resume))
    bar = tqdm(
        total=sum(len(split.videos[v].expressions) for v in names),
        initial=report.skipped,
        desc=f"visa predict {split.split}" + (f" [rank {state.process_index}]" if state else ""),
        unit="expr",
        disable=not progress,
    )
    try:
        if pool is None:
            outcomes = (_run_video(split, v, pipeline, pred_dir, resume) for v in todo)
        else:
            outcomes = pool.imap_unordered(_worker_task, todo)
        for video, count, error in outcomes:
            report.predicted += count
            if error is not None:
                report.failed[video] = error
            bar.update(len(split.videos[video].expressions) if error is None else 0)
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        if pool is not None:
            pool.terminate()
        bar.close()
    if state is not None:
        from visa_lib.data.revos import read_json, write_json

        mine = {"predicted": report.predicted, "skipped": report.skipped, "failed": report.failed}
        write_json(pred_dir / RECORDS / f"rank_{state.process_index}.json", mine)
        state.wait_for_everyone()
        if not state.is_main_process:
            return report
        report = PredictReport(pred_dir)  # the whole split: every process's share
        for path in sorted((pred_dir / RECORDS).glob("rank_*.json")):
            share = read_json(path)
            report.predicted += share["predicted"]
            report.skipped += share["skipped"]
            report.failed.update(share["failed"])
            path.unlink()
    write_target_frames(split, pred_dir)
    return report


# ------------------------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from visa_lib.infer import add_model_arguments

    parser.add_argument("dataset", choices=tuple(DATASETS), help="benchmark layout (as visa eval)")
    parser.add_argument("--data-root", type=Path, required=True, help="dataset folder")
    parser.add_argument("--split", help="split (default: revos valid, mevis valid_u, davis17 valid)")
    parser.add_argument("--out", type=Path, required=True, help="prediction folder (PRED for visa eval)")
    add_model_arguments(parser)
    parser.add_argument(
        "--sampler",
        help="frame sampler: toy (default), uniform, first_frame, hf:<model id or folder>",
    )
    parser.add_argument(
        "--tp-file", type=Path, help="take each expression's tp from VISA's meta_expressions_*__llamavid.json"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler's answers")
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda, mps (accelerate launch sets it per process)"
    )
    parser.add_argument("--workers", type=int, help="CPU processes (default: every core; 1 = in-process)")
    parser.add_argument("--videos", nargs="+", help="only these videos")
    parser.add_argument("--overwrite", action="store_true", help="predict finished expressions again")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def pipeline_spec(args: argparse.Namespace) -> dict:
    """``build_pipeline`` keyword arguments from the model options (the same as ``visa infer``'s)."""
    from visa_lib.cli import CliError
    from visa_lib.infer import pipeline_kwargs

    if args.tp_file is not None and args.sampler is not None:
        raise CliError("--tp-file replaces the frame sampler; give --tp-file or --sampler, not both")
    sampler = f"tpfile:{args.tp_file}" if args.tp_file is not None else (args.sampler or "toy")
    spec = {"name": args.config, "sampler": sampler, "device": args.device, "seed": args.seed}
    return {**spec, **pipeline_kwargs(args)}


def main(args: argparse.Namespace) -> int:
    from visa_lib.cli import CliError

    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers must be >= 1, got {args.workers}")
    if not args.data_root.is_dir():
        raise CliError(f"--data-root {args.data_root} is not a folder; pass the dataset folder")
    spec = pipeline_spec(args)
    try:
        split = load_queries(args.dataset, args.data_root, args.split)
        print(
            f"{args.dataset}/{split.split}: {len(split.videos)} videos, {split.num_expressions} expressions"
        )
        report = predict_split(
            split,
            args.out,
            pipeline_spec=spec,
            workers=args.workers,
            videos=args.videos,
            resume=not args.overwrite,
            progress=not args.quiet,
        )
    except (ValueError, KeyError, FileNotFoundError, ImportError) as err:
        raise CliError(str(err)) from None
    state = _distributed_state()
    if state is None or state.is_main_process:
        print(report)
        print(
            f"score it: visa eval {args.dataset} {args.out} --data-root {args.data_root} "
            f"--split {split.split}"
        )
    return 1 if report.failed else 0
