"""Dataset-level evaluation: ReVOS (J, F, A, R), MeViS and Ref-DAVIS17 (J, F), VISA's aggregation rules.

Per expression (docs/evaluation.md): every metric is the mean over ALL frames of the
video, x100 and rounded to 2 decimals, and ``J&F = (J + F) / 2``. ReVOS subsets: ``referring``
(``type_id`` 0), ``reasoning`` (1) and ``no_target`` (2, which VISA leaves out of every summary; we
report it on its own). **overall = mean(referring, reasoning)** for every metric, not the mean over all
expressions. A subset without expressions has ``None`` values; if only one of referring/reasoning is
present, overall equals it.

Predictions are ``PRED_DIR/<video>/<exp_id>/<frame>.png`` read as raw grayscale values (``cv2``), as
VISA's ``tools/eval_revos.py`` reads them. A missing folder, a missing, unreadable or wrongly sized frame
scores 0 on every metric for the whole expression (VISA does the same) and is listed in ``.failures``.

``mode="visa"`` reproduces VISA's arithmetic on raw values (0/255 predictions against a 0/1 GT sum, which
makes A count only agreeing background and R count each false-positive pixel 255 times);
``mode="binary"`` binarises both first. J and F are the same in both modes.

Two ways in:

* files: :func:`evaluate_revos` / :func:`evaluate_mevis` / :func:`evaluate_davis17` (all cores, fork);
* memory: :func:`evaluate_predictions` scores a ``{(video, exp_id): mask}`` mapping or a callable
  ``predict(video, Expression) -> [T, H, W]`` without touching the disk (notebooks, the demo);
  :func:`write_predictions` writes masks as VISA-style 0/255 PNGs for the file path.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from tqdm.auto import tqdm

from visa_lib import metrics
from visa_lib.data.formats import load_davis17, load_mevis
from visa_lib.data.revos import TYPE_NAMES, Expression, RevosSplit, load_revos
from visa_lib.prediction_png import read_prediction_png

#: Frames scored at once; bounds memory on long, high-resolution videos (prediction + GT + foreground).
FRAME_CHUNK = 32
MODES = ("visa", "binary")
REVOS_METRICS = ("J", "F", "A", "R")
RVOS_METRICS = ("J", "F")
#: VISA's ReVOS validation J&F as its paper reports them (Table 1; later papers quote the same values).
VISA_PUBLISHED_REVOS = {
    "VISA-7B": {"referring": 50.9, "reasoning": 43.0, "overall": 46.9},
    "VISA-13B": {"referring": 57.4, "reasoning": 44.3, "overall": 50.9},
}


class Failure(NamedTuple):
    """One expression that scored 0: ``(video, exp_id, reason)``."""

    video: str
    exp_id: str
    reason: str


class PredictionError(Exception):
    """A prediction is missing or malformed; the expression scores 0."""


@dataclass
class ExpressionScore:
    """Scores of one expression on the 0-100 scale, rounded to 2 decimals as VISA does.

    ``values`` maps metric names (``"J"``, ``"F"``, ``"J&F"``, and ``"A"``, ``"R"`` for ReVOS) to floats.
    ``failure`` is the reason it scored 0, or ``None``; ``note`` names a prediction file that VISA's
    reader changes silently (16-bit, JPEG bytes, values other than 0/255; scored as VISA scores it).
    """

    video: str
    exp_id: str
    type_id: int
    text: str
    values: dict[str, float]
    failure: str | None = None
    note: str | None = None


# ------------------------------------------------------------------------------------------------- results


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


class _EvalResult:
    """What every evaluator returns: per-expression scores, failures and the subset summaries."""

    metric_names: tuple[str, ...] = RVOS_METRICS

    def __init__(
        self, scores: list[ExpressionScore], mode: str, dataset: str, unknown: Sequence[str] = ()
    ) -> None:
        self.scores = scores
        self.mode = mode
        self.dataset = dataset
        #: Prediction folders (``<video>/<exp_id>``) that the split does not know; they are not scored.
        self.unknown = list(unknown)

    @property
    def notes(self) -> list[Failure]:
        """Expressions scored as VISA does whose files its reader changes: ``(video, exp_id, note)``."""
        return [Failure(s.video, s.exp_id, s.note) for s in self.scores if s.note is not None]

    @property
    def failures(self) -> list[Failure]:
        """Every expression that scored 0 because of its prediction, as ``(video, exp_id, reason)``."""
        return [Failure(s.video, s.exp_id, s.failure) for s in self.scores if s.failure is not None]

    def _subset_summary(self, scores: Sequence[ExpressionScore]) -> dict[str, float | None]:
        out = {name: _mean([s.values[name] for s in scores]) for name in self.metric_names}
        out["J&F"] = None if out["J"] is None else (out["J"] + out["F"]) / 2
        return out

    def summary(self) -> dict[str, Any]:
        """The summary dictionary (subclasses define the subsets)."""
        raise NotImplementedError

    def as_dict(self) -> dict[str, Any]:
        """Summary (values rounded to 4 decimals), expressions per subset, mode and failures, JSON-ready."""
        out: dict[str, Any] = {}
        for key, value in self.summary().items():
            out[key] = {k: _round(v) for k, v in value.items()} if isinstance(value, dict) else _round(value)
        out["num_expressions"] = {label: count for label, count, _ in self._rows()}
        out["mode"] = self.mode
        out["failures"] = [f._asdict() for f in self.failures]
        out["notes"] = [f._asdict() for f in self.notes]
        out["unknown_prediction_folders"] = self.unknown
        return out

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`as_dict` as JSON (``null`` for empty subsets), atomically. Returns the path."""
        from visa_lib.data.revos import write_json

        write_json(Path(path), self.as_dict(), indent=2)
        return Path(path)

    def to_csv(self, path: str | Path) -> Path:
        """One row per expression: video, exp_id, type_id, metrics, failure reason, text. Returns the path.

        Written to a temporary file and renamed, so Ctrl-C never leaves half a table (or clobbers an
        earlier one).
        """
        import tempfile

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        names = list(self.metric_names) + ["J&F"]
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(["video", "exp_id", "type_id", *names, "failure", "text"])
                for s in self.scores:
                    values = (f"{s.values[n]:.2f}" for n in names)
                    writer.writerow([s.video, s.exp_id, s.type_id, *values, s.failure or "", s.text])
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def _rows(self) -> list[tuple[str, int, dict[str, float | None]]]:
        raise NotImplementedError

    def table(self) -> str:
        """A markdown table of the summary, followed by the list of failures (if any)."""
        names = ["J&F", *self.metric_names]
        lines = ["| subset | # | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
        for label, count, values in self._rows():
            cells = ["-" if values[n] is None else f"{values[n]:.2f}" for n in names]
            lines.append(f"| {label} | {count} | " + " | ".join(cells) + " |")
        failures = self.failures
        if failures:
            lines.append("")
            lines.append(f"{len(failures)} expression(s) scored 0 because of their prediction:")
            lines.extend(f"  {f.video} / {f.exp_id}: {f.reason}" for f in failures)
        if self.notes:
            lines.append("")
            count = len(self.notes)
            lines.append(f"{count} expression(s) scored as VISA would, but its reader changes their files:")
            lines.extend(f"  {f.video} / {f.exp_id}: {f.reason}" for f in self.notes)
        if self.unknown:
            lines.append("")
            count = len(self.unknown)
            lines.append(f"{count} prediction folder(s) that {self.dataset} does not know (not scored):")
            lines.extend(f"  {folder}" for folder in self.unknown)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dataset={self.dataset!r}, expressions={len(self.scores)}, "
            f"failures={len(self.failures)}, mode={self.mode!r})"
        )


class RevosResult(_EvalResult):
    """ReVOS result: subsets ``referring``, ``reasoning``, ``overall``, ``no_target``; J, F, J&F, A, R."""

    metric_names = REVOS_METRICS

    def by_type(self, type_id: int) -> list[ExpressionScore]:
        """The expressions of one ``type_id``."""
        return [s for s in self.scores if s.type_id == type_id]

    def summary(self) -> dict[str, dict[str, float | None]]:
        """``{"referring", "reasoning", "overall", "no_target"}`` -> ``{J, F, J&F, A, R}`` (0-100)."""
        referring = self._subset_summary(self.by_type(0))
        reasoning = self._subset_summary(self.by_type(1))
        overall = {}
        for name in referring:
            present = [v for v in (referring[name], reasoning[name]) if v is not None]
            overall[name] = _mean(present)
        return {
            "referring": referring,
            "reasoning": reasoning,
            "overall": overall,
            "no_target": self._subset_summary(self.by_type(2)),
        }

    def _rows(self) -> list[tuple[str, int, dict[str, float | None]]]:
        summary = self.summary()
        counts = {name: len(self.by_type(t)) for t, name in TYPE_NAMES.items()}
        counts["overall"] = counts["referring"] + counts["reasoning"]
        return [
            (name, counts[name], summary[name]) for name in ("referring", "reasoning", "overall", "no_target")
        ]


class RvosResult(_EvalResult):
    """MeViS / Ref-DAVIS17 result: J, F, J&F as means over all expressions (``J&F = (J + F) / 2``)."""

    metric_names = RVOS_METRICS

    def summary(self) -> dict[str, float | None]:
        """``{"J", "F", "J&F"}`` on 0-100."""
        return self._subset_summary(self.scores)

    def _rows(self) -> list[tuple[str, int, dict[str, float | None]]]:
        return [(self.dataset, len(self.scores), self.summary())]


# ------------------------------------------------------------------------------------------ per expression


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _frame_scores(
    pred: np.ndarray,
    gt: np.ndarray,
    fg: np.ndarray | None,
    names: Sequence[str],
    mode: str,
    frame_shape: tuple[int, int],
) -> dict[str, np.ndarray]:
    """Per-frame metric values of a chunk from crops ``[t, h, w]`` of frames of ``frame_shape`` ``(H, W)``.

    The three crops cover the same box, made by :func:`_scoring_box`: outside it prediction, ground
    truth and foreground are all 0, so J's counts, R's sums and F's boundary maps are the whole frame's,
    and A adds the agreeing pixels left out (``frame_pixels``).
    """
    radius = metrics.boundary_radius(frame_shape)  # of the whole frame, not of the crop
    # J and F binarise with != 0 anyway; doing it once here saves two passes over the chunk.
    pred_b, gt_b = pred != 0, gt != 0
    out = {
        "J": np.atleast_1d(metrics.jaccard(pred_b, gt_b)),
        "F": np.atleast_1d(metrics.f_measure(pred_b, gt_b, bound_th=radius)),
    }
    if "A" in names:
        frame_pixels = frame_shape[0] * frame_shape[1]
        out["A"] = np.atleast_1d(metrics.accuracy(pred, gt, mode=mode, frame_pixels=frame_pixels))
    if "R" in names:
        out["R"] = np.atleast_1d(metrics.robustness(pred, gt, fg, mode=mode))
    return out


#: ``(top, left, bottom, right)`` with exclusive ends.
_Corners = tuple[int, int, int, int]


def _mask_box(stack: np.ndarray) -> _Corners | None:
    """Box of the nonzero pixels of a uint8 ``[t, H, W]`` stack (``None``: all zero)."""
    top, left, bottom, right = stack.shape[1], stack.shape[2], 0, 0
    for frame in stack:
        x, y, w, h = cv2.boundingRect(frame)
        if w:
            top, left, bottom, right = min(top, y), min(left, x), max(bottom, y + h), max(right, x + w)
    return (top, left, bottom, right) if bottom else None


def _scoring_box(frame_shape: tuple[int, int], *boxes: _Corners | None) -> _Corners:
    """The union of ``boxes`` grown by one pixel on each side and clamped to the frame.

    F's boundary map marks a background pixel next to the mask, and the zero ring keeps the crop's own
    edges from adding boundaries. No box at all -> the 1x1 box at the origin (every metric is then
    decided by the pixels left out, which agree).
    """
    boxes = tuple(b for b in boxes if b is not None)
    if not boxes:
        return 0, 0, 1, 1
    height, width = frame_shape
    return (max(min(b[0] for b in boxes) - 1, 0), max(min(b[1] for b in boxes) - 1, 0),
            min(max(b[2] for b in boxes) + 1, height), min(max(b[3] for b in boxes) + 1, width))


def _slices(box: _Corners) -> tuple[slice, slice]:
    return slice(box[0], box[2]), slice(box[1], box[3])


def _widen(crop: np.ndarray, box: _Corners, wider: _Corners) -> np.ndarray:
    """A crop ``[t, h, w]`` of ``box`` as a crop of ``wider`` (which contains ``box``), zeros around it."""
    if box == wider:
        return crop
    out = np.zeros((crop.shape[0], wider[2] - wider[0], wider[3] - wider[1]), crop.dtype)
    out[:, box[0] - wider[0]:box[2] - wider[0], box[1] - wider[1]:box[3] - wider[1]] = crop
    return out


class _ChunkTruth:
    """Ground truth and foreground of one video's chunk, decoded once for all its expressions, inside the
    box of the video's objects and foreground (read from the RLEs, see ``RevosSplit.object_box``)."""

    def __init__(self, split: RevosSplit, video: str, chunk: slice, with_foreground: bool) -> None:
        meta = split.videos[video]
        self.split, self.video, self.chunk = split, video, chunk
        self.frame_shape = (meta.height, meta.width)
        self.objects = split.object_box(video, chunk)
        self.box = _scoring_box(self.frame_shape, self.objects)
        self.decoded: dict[int, np.ndarray] = {}  # each object decoded once, for every expression
        self.fg = split.foreground_masks(video, chunk, _slices(self.box)) if with_foreground else None

    def scores(self, exp_id: str, pred: np.ndarray, names: Sequence[str], mode: str) -> dict[str, np.ndarray]:
        """Per-frame values of one expression's prediction ``uint8 [t, H, W]`` on this chunk."""
        box = _scoring_box(self.frame_shape, self.objects, _mask_box(pred))
        gt = self.split.gt_masks(self.video, exp_id, self.chunk, self.decoded, _slices(self.box))
        fg = _widen(self.fg, self.box, box) if self.fg is not None else None
        gt = _widen(gt, self.box, box)
        rows, cols = _slices(box)
        return _frame_scores(pred[:, rows, cols], gt, fg, names, mode, self.frame_shape)


def _expression_values(sums: dict[str, float], num_frames: int) -> dict[str, float]:
    """Means over frames -> 0-100 rounded to 2 decimals; ``J&F`` from the unrounded means (as VISA)."""
    means = {k: v / num_frames for k, v in sums.items()}
    values = {k: round(100 * v, 2) for k, v in means.items()}
    values["J&F"] = round(100 * (means["J"] + means["F"]) / 2, 2)
    return values


def _zeros(names: Sequence[str]) -> dict[str, float]:
    return {**{n: 0.0 for n in names}, "J&F": 0.0}


def _read_prediction(
    folder: Path, frames: Sequence[str], height: int, width: int, notes: dict[str, str] | None = None
) -> np.ndarray:
    """Read PNG frames as raw grayscale values ``uint8 [t, H, W]``; raise :class:`PredictionError`.

    Values are exactly ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``'s (:mod:`visa_lib.prediction_png`);
    the first file that this reading changes silently is recorded in ``notes[str(folder)]``.
    """
    out = np.empty((len(frames), height, width), dtype=np.uint8)
    for t, frame in enumerate(frames):
        path = folder / f"{frame}.png"
        try:
            image, note = read_prediction_png(path)
        except FileNotFoundError:
            raise PredictionError(f"missing frame {path}") from None
        except OSError as err:
            raise PredictionError(f"unreadable file {path} ({err.strerror or err})") from None
        if image is None:
            raise PredictionError(f"unreadable PNG {path}")
        if image.shape != (height, width):
            raise PredictionError(f"{path} is {image.shape[0]}x{image.shape[1]}, expected {height}x{width}")
        if note is not None and notes is not None:
            notes.setdefault(str(folder), f"{path}: {note}")
        out[t] = image
    return out


def _as_raw(masks: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """In-memory prediction -> the raw values its PNG would hold: bool -> 0/255, integers kept."""
    array = np.asarray(masks)
    if array.shape != shape:
        raise PredictionError(f"prediction has shape {list(array.shape)}, expected {list(shape)} ([T, H, W])")
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if not np.issubdtype(array.dtype, np.integer) or array.min(initial=0) < 0 or array.max(initial=0) > 255:
        raise PredictionError(f"prediction must be bool or integers in 0..255, got {array.dtype}")
    return array.astype(np.uint8)


#: ``reader(chunk, frame names) -> uint8 [t, H, W]`` raw prediction values of one expression.
Reader = Callable[[slice, list[str]], np.ndarray]


def _score_video(
    split: RevosSplit,
    video: str,
    readers: Mapping[str, Reader],
    failed: Mapping[str, str],
    names: Sequence[str],
    mode: str,
) -> list[ExpressionScore]:
    """Score every expression of one video, chunk by chunk.

    The ground truth and foreground are decoded once per chunk (:class:`_ChunkTruth`) and shared by its
    expressions. An expression in ``failed`` (reason known up front), or whose reader raises, scores 0
    with the reason recorded (any exception counts, as in VISA, but it is never silent).

    Args:
        split: the loaded split.
        video: video name.
        readers: ``{exp_id: reader}`` for the expressions that have a prediction.
        failed: ``{exp_id: reason}`` for those that do not.
        names: metric names to compute.
        mode: ``"visa"`` or ``"binary"``.

    Returns:
        One :class:`ExpressionScore` per expression of the video, in file order.
    """
    meta = split.videos[video]
    failed = dict(failed)
    sums = {exp_id: {n: 0.0 for n in names} for exp_id in meta.expressions}
    for start in range(0, len(meta.frames), FRAME_CHUNK):
        alive = [e for e in meta.expressions if e not in failed]
        if not alive:
            break
        chunk = slice(start, min(start + FRAME_CHUNK, len(meta.frames)))
        truth = _ChunkTruth(split, video, chunk, with_foreground="R" in names)
        for exp_id in alive:
            try:
                pred = readers[exp_id](chunk, meta.frames[chunk])
                for name, per_frame in truth.scores(exp_id, pred, names, mode).items():
                    sums[exp_id][name] += float(np.sum(per_frame))
            except PredictionError as err:
                failed[exp_id] = str(err)
            except Exception as err:  # noqa: BLE001 - VISA scores any failure 0; we also say why
                failed[exp_id] = f"{type(err).__name__}: {err}"
    scores = []
    for exp_id, exp in meta.expressions.items():
        if exp_id in failed:
            values, reason = _zeros(names), failed[exp_id]
        else:
            values, reason = _expression_values(sums[exp_id], len(meta.frames)), None
        scores.append(ExpressionScore(video, exp_id, exp.type_id, exp.text, values, reason))
    return scores


def _score_video_files(
    split: RevosSplit, pred_dir: Path, video: str, names: Sequence[str], mode: str
) -> list[ExpressionScore]:
    """:func:`_score_video` on ``pred_dir/<video>/<exp_id>/<frame>.png``."""
    meta = split.videos[video]
    readers: dict[str, Reader] = {}
    failed: dict[str, str] = {}
    for exp_id in meta.expressions:
        folder = pred_dir / video / exp_id
        if not folder.is_dir():
            missing = pred_dir / video if not (pred_dir / video).is_dir() else folder
            failed[exp_id] = f"missing folder {missing}"
            continue
        readers[exp_id] = lambda _chunk, frames, folder=folder: _read_prediction(
            folder, frames, meta.height, meta.width, notes
        )
    notes: dict[str, str] = {}
    scores = _score_video(split, video, readers, failed, names, mode)
    for score in scores:
        score.note = notes.get(str(pred_dir / video / score.exp_id))
    return scores


def unknown_prediction_folders(pred_dir: Path, split: RevosSplit) -> list[str]:
    """``<video>/<exp_id>`` folders holding PNGs under ``pred_dir`` that ``split`` has no expression for.

    Hidden folders (``visa predict``'s records, unfinished ``.partial`` folders) are skipped.
    """
    unknown = []
    for folder, dirs, files in os.walk(pred_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if folder == str(pred_dir) or not any(f.endswith(".png") for f in files):
            continue
        relative = Path(folder).relative_to(pred_dir)
        video, exp_id = relative.parent.as_posix(), relative.name
        meta = split.videos.get(video)
        if meta is None or exp_id not in meta.expressions:
            unknown.append(relative.as_posix())
    return unknown


# Set in the parent before the pool forks, so workers share the split (copy-on-write) instead of pickling it.
_JOB: dict[str, Any] = {}


def _pool_task(video: str) -> tuple[str, list[ExpressionScore]]:
    return video, _score_video_files(_JOB["split"], _JOB["pred_dir"], video, _JOB["names"], _JOB["mode"])


def _run(
    split: RevosSplit,
    pred_dir: Path,
    names: Sequence[str],
    mode: str,
    workers: int | None,
    progress: bool,
) -> list[ExpressionScore]:
    """Score every expression of ``split``, one task per video; results in file order whatever the workers."""
    videos = list(split.videos)
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    workers = min(workers, max(len(videos), 1))
    if "fork" not in mp.get_all_start_methods():
        workers = 1  # sharing the split by fork is the point; elsewhere (Windows) run in-process
    results: dict[str, list[ExpressionScore]] = {}
    pool = None
    if workers > 1:
        # Fork before the progress bar exists: forking a process with live threads (tqdm's monitor) is unsafe.
        _JOB.update(split=split, pred_dir=pred_dir, names=tuple(names), mode=mode)
        pool = mp.get_context("fork").Pool(workers)
    desc = f"evaluating {split.split}"
    bar = tqdm(total=split.num_expressions, desc=desc, unit="expr", disable=not progress)
    try:
        if pool is None:
            for video in videos:
                results[video] = _score_video_files(split, pred_dir, video, names, mode)
                bar.update(len(results[video]))
        else:
            for video, scores in pool.imap_unordered(_pool_task, videos):
                results[video] = scores
                bar.update(len(scores))
            pool.close()
            pool.join()
    finally:
        if pool is not None:
            pool.terminate()
        _JOB.clear()
        bar.close()
    return [score for video in videos for score in results.get(video, [])]


def _check_pred_dir(pred_dir: str | Path) -> Path:
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(
            f"prediction folder {pred_dir} does not exist; expected PRED_DIR/<video>/<exp_id>/<frame>.png"
        )
    return pred_dir


# ------------------------------------------------------------------------------------------------ public API


def evaluate_revos(
    pred_dir: str | Path,
    data_root: str | Path,
    split: str = "valid",
    mode: str = "visa",
    workers: int | None = None,
    progress: bool = True,
) -> RevosResult:
    """Evaluate PNG predictions on a ReVOS-format split with VISA's J, F, A, R and aggregation.

    Args:
        pred_dir: folder with ``<video>/<exp_id>/<frame>.png`` (0/255 grayscale as VISA writes them).
        data_root: folder with ``meta_expressions_<split>_.json``, ``mask_dict.json`` and
            ``mask_dict_foreground.json`` (computed from ``mask_dict.json`` when absent).
        split: split name.
        mode: ``"visa"`` (raw values, reproduces published A/R) or ``"binary"`` (binarised inputs).
        workers: processes (default: all cores); ``1`` runs in this process.
        progress: show a tqdm bar.

    Returns:
        :class:`RevosResult` (``.summary()``, ``.table()``, ``.to_json()``, ``.to_csv()``, ``.failures``).
    """
    _check_mode(mode)
    pred_dir = _check_pred_dir(pred_dir)
    data = load_revos(data_root, split)
    scores = _run(data, pred_dir, REVOS_METRICS, mode, workers, progress)
    return RevosResult(scores, mode, f"revos/{split}", unknown_prediction_folders(pred_dir, data))


def evaluate_mevis(
    pred_dir: str | Path,
    data_root: str | Path,
    split: str = "valid_u",
    workers: int | None = None,
    progress: bool = True,
) -> RvosResult:
    """Evaluate PNG predictions on a MeViS split: J, F, J&F over all expressions (``tools/eval_mevis.py``).

    Args:
        pred_dir: folder with ``<video>/<exp_id>/<frame>.png``.
        data_root: MeViS folder holding ``<split>/`` (or the split folder itself).
        split: ``"valid_u"`` by default, as VISA.
        workers, progress: as :func:`evaluate_revos`.
    """
    pred_dir = _check_pred_dir(pred_dir)
    data = load_mevis(data_root, split)
    scores = _run(data, pred_dir, RVOS_METRICS, "visa", workers, progress)
    return RvosResult(scores, "visa", f"mevis/{split}", unknown_prediction_folders(pred_dir, data))


def evaluate_davis17(
    pred_dir: str | Path,
    data_root: str | Path,
    split: str = "valid",
    workers: int | None = None,
    progress: bool = True,
) -> RvosResult:
    """Evaluate PNG predictions on Ref-DAVIS17 (``mask_dict.pkl`` keyed by the running expression index).

    Args:
        pred_dir: folder with ``<video>/<exp_id>/<frame>.png``.
        data_root: Ref-DAVIS17 folder holding ``<split>/`` (or the split folder itself).
        split: ``"valid"`` by default.
        workers, progress: as :func:`evaluate_revos`.
    """
    pred_dir = _check_pred_dir(pred_dir)
    data = load_davis17(data_root, split)
    scores = _run(data, pred_dir, RVOS_METRICS, "visa", workers, progress)
    return RvosResult(scores, "visa", f"davis17/{split}", unknown_prediction_folders(pred_dir, data))


def evaluate_predictions(
    split: RevosSplit,
    predictions: Mapping[tuple[str, str], np.ndarray] | Callable[[str, Expression], np.ndarray],
    mode: str = "visa",
    metric_names: Sequence[str] = REVOS_METRICS,
    progress: bool = True,
) -> RevosResult | RvosResult:
    """Score in-memory predictions with exactly the numbers the file-based path would give.

    Args:
        split: a loaded split (:func:`~visa_lib.data.revos.load_revos`, ``load_mevis``, ``load_davis17``).
        predictions: ``{(video, exp_id): [T, H, W]}`` or ``predict(video, Expression) -> [T, H, W]``.
            ``bool`` masks count as the 0/255 PNGs VISA writes; integer arrays are raw PNG values (0-255).
            A missing key, an exception in ``predict`` or a wrong shape scores 0 and is listed.
        mode: ``"visa"`` or ``"binary"`` (see the module docstring).
        metric_names: ``("J", "F", "A", "R")`` -> :class:`RevosResult`; ``("J", "F")`` -> :class:`RvosResult`.
        progress: show a tqdm bar.
    """
    _check_mode(mode)
    names = tuple(metric_names)
    if names not in (REVOS_METRICS, RVOS_METRICS):
        raise ValueError(f"metric_names must be {REVOS_METRICS} or {RVOS_METRICS}, got {names}")
    scores = []
    for video, meta in tqdm(split.videos.items(), desc="evaluating", unit="video", disable=not progress):
        shape = (len(meta.frames), meta.height, meta.width)
        readers: dict[str, Reader] = {}
        failed: dict[str, str] = {}
        for exp_id, exp in meta.expressions.items():
            try:
                if callable(predictions):
                    raw = _as_raw(predictions(video, exp), shape)
                elif (video, exp_id) in predictions:
                    raw = _as_raw(predictions[(video, exp_id)], shape)
                else:
                    raise PredictionError(f"no prediction for ({video!r}, {exp_id!r})")
            except Exception as err:  # noqa: BLE001 - a broken prediction scores 0 and is listed
                is_ours = isinstance(err, PredictionError)
                failed[exp_id] = str(err) if is_ours else f"{type(err).__name__}: {err}"
                continue
            readers[exp_id] = lambda chunk, _frames, raw=raw: raw[chunk]
        scores.extend(_score_video(split, video, readers, failed, names, mode))
    result_cls = RevosResult if names == REVOS_METRICS else RvosResult
    return result_cls(scores, mode, split.split)


def write_predictions(
    pred_dir: str | Path,
    video: str,
    exp_id: str,
    frames: Sequence[str],
    masks: np.ndarray,
) -> Path:
    """Write one expression's masks as ``pred_dir/<video>/<exp_id>/<frame>.png``, 0/255 grayscale like VISA.

    Args:
        pred_dir: prediction root.
        video: video name (may contain "/").
        exp_id: expression id.
        frames: frame names, one per mask.
        masks: ``bool`` ``[T, H, W]`` (non-zero = foreground).

    Returns:
        The expression folder.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[0] != len(frames):
        raise ValueError(
            f"masks must be [T, H, W] with T = len(frames) = {len(frames)}, got {list(masks.shape)}"
        )
    folder = Path(pred_dir) / video / str(exp_id)
    folder.mkdir(parents=True, exist_ok=True)
    for frame, mask in zip(frames, masks, strict=True):
        write_mask_png(folder / f"{frame}.png", mask)
    return folder


def read_predictions(pred_dir: str | Path, video: str, exp_id: str, frames: Sequence[str]) -> np.ndarray:
    """One expression's masks back from ``pred_dir/<video>/<exp_id>/<frame>.png`` -> bool ``[T, H, W]``.

    Raises:
        PredictionError: a frame is missing, unreadable, or of another size than the first.
    """
    from PIL import Image

    folder = Path(pred_dir) / video / str(exp_id)
    first = folder / f"{frames[0]}.png"
    if not first.is_file():
        raise PredictionError(f"missing frame {first}")
    width, height = Image.open(first).size
    return _read_prediction(folder, frames, height, width) > 0


def write_mask_png(path: str | Path, mask: np.ndarray) -> Path:
    """Write one mask (``[H, W]``, non-zero = object) as an 8-bit 0/255 grayscale PNG, as VISA does."""
    import cv2

    path = Path(path)
    if not cv2.imwrite(str(path), np.where(np.asarray(mask) != 0, np.uint8(255), np.uint8(0))):
        raise OSError(f"{path}: could not be written")
    return path


def read_mask_png(path: str | Path) -> np.ndarray:
    """Read a mask PNG as its raw 8-bit grayscale values ``uint8 [H, W]`` (``cv2.IMREAD_GRAYSCALE``)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return image
