"""The ReVOS dataset format: reader (with validation), writer, and ground-truth decoding.

A ReVOS root holds (docs/datasets.md)::

    JPEGImages/<video>/<frame>.jpg        video names may contain "/" (e.g. "TAO/abc") -> nested folders
    meta_expressions_<split>_.json        {"videos": {video: {"frames", "expressions", "height", "width"}}}
    mask_dict.json                        {str(anno_id): [RLE or null per frame]}   (all splits together)
    mask_dict_foreground.json             {video: {"masks_rle": [RLE per frame], "foreground_ratio": [...]}}

Each expression is ``{"exp": str, "obj_id": [int], "anno_id": [int], "type_id": 0|1|2}``; type 0 is a
referring expression, 1 a reasoning one, 2 an expression VISA's evaluator leaves out of every summary.

Ground truth of an expression: VISA *trains* on the union (OR) of its ``anno_id`` masks but *evaluates*
against their ``uint8`` SUM (two overlapping objects give the value 2). :meth:`RevosSplit.gt_masks`
returns the sum, so our evaluator reproduces VISA's numbers; use ``gt_masks(...) > 0`` for the union.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visa_lib.data.rle import RLE, Box, decode_rles, encode_rle, encode_video_rle, rle_box, rle_pixel_counts
from visa_lib.paths import display_path

#: Subset names of ``type_id`` 0, 1 and 2 (the last one is excluded from VISA's summaries).
TYPE_NAMES = {0: "referring", 1: "reasoning", 2: "no_target"}
MASK_DICT = "mask_dict.json"
FOREGROUND_DICT = "mask_dict_foreground.json"
FRAME_DIR = "JPEGImages"
FRAME_EXT = ".jpg"


class DatasetFormatError(ValueError):
    """A dataset file is malformed or inconsistent; the message names the file and what to do."""


@dataclass
class Expression:
    """One text query of a video.

    Attributes:
        exp_id: key of the expression inside its video (a string such as ``"0"``).
        text: the query (``"exp"`` in the JSON).
        obj_ids: object ids inside the video (informative only).
        anno_ids: keys into ``mask_dict.json``; the ground truth combines these masks (empty = no target).
        type_id: 0 referring, 1 reasoning, 2 excluded from summaries.
    """

    exp_id: str
    text: str
    obj_ids: list[int] = field(default_factory=list)
    anno_ids: list[int] = field(default_factory=list)
    type_id: int = 0


@dataclass
class VideoMeta:
    """One video: ordered frame names (without extension), its expressions and its size in pixels."""

    name: str
    frames: list[str]
    expressions: dict[str, Expression]
    height: int
    width: int


# ----------------------------------------------------------------------------------------------- I/O helpers


def read_json(path: Path) -> Any:
    """Read a JSON file; a syntax error becomes a :class:`DatasetFormatError` with line and column."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found; check the dataset root / --data-root")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as err:
        raise DatasetFormatError(
            f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}; "
            "re-download or regenerate the file"
        ) from None


def write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    """Write JSON atomically (temporary file + rename), so an interrupted write never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=indent)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def find_meta_file(root: Path, split: str) -> Path:
    """``root/meta_expressions_<split>_.json`` (ReVOS spelling) or, failing that, without the underscore."""
    root = Path(root)
    candidates = [root / f"meta_expressions_{split}_.json", root / f"meta_expressions_{split}.json"]
    for path in candidates:
        if path.is_file():
            return path
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist; pass the folder holding {MASK_DICT}")
    raise FileNotFoundError(
        f"{root}: neither {candidates[0].name} nor {candidates[1].name} found; check --split "
        f"(found: {sorted(p.name for p in root.glob('meta_expressions*.json')) or 'none'})"
    )


def _int_list(value: Any, where: str) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        value = [value]
    try:
        return [int(v) for v in value]
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{where}: expected a list of integers, got {value!r}") from None


def parse_meta(
    meta: Any,
    path: Path,
    require_type: bool = True,
    require_size: bool = True,
) -> dict[str, VideoMeta]:
    """Validate the parsed ``meta_expressions`` JSON and turn it into :class:`VideoMeta` objects.

    Args:
        meta: the parsed JSON (``{"videos": {...}}``).
        path: the file it came from (used in error messages).
        require_type: ReVOS needs ``type_id``; MeViS / Ref-DAVIS17 default it to 0.
        require_size: ReVOS needs ``height``/``width``; the others take it from the masks (size -1 here).

    Returns:
        ``{video name: VideoMeta}`` in file order; frames keep the JSON order (VISA's evaluator does too).
    """
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        raise DatasetFormatError(f"{path}: missing top-level key 'videos' (expected {{\"videos\": {{...}}}})")
    videos: dict[str, VideoMeta] = {}
    for name, entry in meta["videos"].items():
        where = f"{path}: video '{name}'"
        if not isinstance(entry, dict):
            raise DatasetFormatError(f"{where}: expected an object, got {type(entry).__name__}")
        required = ["frames", "expressions"] + (["height", "width"] if require_size else [])
        missing = [key for key in required if key not in entry]
        if missing:
            raise DatasetFormatError(f"{where}: missing key(s) {missing}; every video needs {required}")
        if not isinstance(entry["frames"], list) or not entry["frames"]:
            raise DatasetFormatError(f"{where}: 'frames' must be a non-empty list of frame names")
        if not isinstance(entry["expressions"], dict):
            raise DatasetFormatError(f"{where}: 'expressions' must be an object {{exp_id: {{...}}}}")
        frames = [str(f) for f in entry["frames"]]
        try:
            height, width = int(entry.get("height", -1)), int(entry.get("width", -1))
        except (TypeError, ValueError):
            raise DatasetFormatError(f"{where}: height/width must be integers") from None
        if require_size and (height <= 0 or width <= 0):
            raise DatasetFormatError(f"{where}: height/width must be positive, got {height}x{width}")
        expressions: dict[str, Expression] = {}
        for exp_id, exp in entry["expressions"].items():
            ewhere = f"{where} expression '{exp_id}'"
            if not isinstance(exp, dict):
                raise DatasetFormatError(f"{ewhere}: expected an object, got {type(exp).__name__}")
            needed = ["exp", "anno_id"] + (["type_id"] if require_type else [])
            missing = [key for key in needed if key not in exp]
            if missing:
                raise DatasetFormatError(f"{ewhere}: missing key(s) {missing}")
            type_id = exp.get("type_id", 0)
            if type_id not in TYPE_NAMES:
                raise DatasetFormatError(
                    f"{ewhere}: type_id {type_id!r} is not one of 0 (referring), 1 (reasoning), 2 (no target)"
                )
            expressions[str(exp_id)] = Expression(
                exp_id=str(exp_id),
                text=str(exp["exp"]),
                obj_ids=_int_list(exp.get("obj_id"), f"{ewhere} 'obj_id'"),
                anno_ids=_int_list(exp["anno_id"], f"{ewhere} 'anno_id'"),
                type_id=int(type_id),
            )
        videos[str(name)] = VideoMeta(str(name), frames, expressions, height, width)
    return videos


def validate_masks(
    videos: Mapping[str, VideoMeta],
    mask_dict: Mapping[str, Any],
    meta_path: Path,
    mask_path: Path,
) -> None:
    """Check that every referenced ``anno_id`` exists, has one entry per frame and the video's size.

    Videos whose size is unknown (``height == -1``, MeViS / Ref-DAVIS17) get it from their first RLE.
    """
    if not isinstance(mask_dict, dict):
        raise DatasetFormatError(f"{mask_path}: expected {{anno_id: [RLE or null per frame]}}")
    checked: dict[str, str] = {}  # anno_id -> "video 'v' expression 'e'" of its first use
    for video in videos.values():
        for exp in video.expressions.values():
            for anno_id in exp.anno_ids:
                key = str(anno_id)
                if key not in mask_dict:
                    raise DatasetFormatError(
                        f"{meta_path}: video '{video.name}' expression '{exp.exp_id}' references anno_id "
                        f"{anno_id}, which is missing from {mask_path}; regenerate {mask_path.name} "
                        "or fix the anno_id"
                    )
                rles = mask_dict[key]
                if not isinstance(rles, list) or len(rles) != len(video.frames):
                    count = len(rles) if isinstance(rles, list) else type(rles).__name__
                    raise DatasetFormatError(
                        f"{mask_path}: anno_id {anno_id} has {count} frames, video '{video.name}' has "
                        f"{len(video.frames)} (in {meta_path.name}); the two files do not belong together"
                    )
                if key not in checked:
                    _check_rle_sizes(rles, video, f"{mask_path}: anno_id {anno_id}")
                    checked[key] = f"video '{video.name}' expression '{exp.exp_id}'"
    check_rle_counts(
        {f"anno_id {key} ({used})": mask_dict[key] for key, used in checked.items()}, mask_path
    )


def check_rle_counts(rles_by_name: Mapping[str, Sequence[RLE | None]], path: Path) -> None:
    """Decode-check every RLE's runs (they must cover ``H x W`` pixels exactly) in one batched pass.

    Truncated or garbled counts would otherwise decode silently into a wrong ground truth (or fail
    later, blamed on a prediction). Raises :class:`DatasetFormatError` naming ``path``, the entry and
    the frame.
    """
    names, frames, counts, expected = [], [], [], []
    for name, rles in rles_by_name.items():
        for index, rle in enumerate(rles):
            if rle is not None:
                names.append(name)
                frames.append(index)
                counts.append(rle["counts"])
                expected.append(int(rle["size"][0]) * int(rle["size"][1]))
    if not counts:
        return
    covered = rle_pixel_counts(counts)
    wrong = np.flatnonzero(covered != np.asarray(expected))
    if len(wrong):
        i = int(wrong[0])
        what = "malformed counts" if covered[i] < 0 else f"runs covering {covered[i]} pixels"
        raise DatasetFormatError(
            f"{path}: {names[i]} frame {frames[i]}: corrupt RLE ({what}, the mask has {expected[i]}; "
            f"{len(wrong)} bad RLE(s) in all); the file is damaged: download or regenerate {path.name}"
        )


def _check_rle_sizes(rles: Sequence[RLE | None], video: VideoMeta, where: str) -> None:
    for index, rle in enumerate(rles):
        if rle is None:
            continue
        if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
            raise DatasetFormatError(
                f"{where} frame {index}: expected null or {{'size', 'counts'}}, got {rle!r}"
            )
        size = [int(v) for v in rle["size"]]
        if video.height < 0:  # size not in the meta file: the first mask defines it
            video.height, video.width = size
        if size != [video.height, video.width]:
            raise DatasetFormatError(
                f"{where} frame {index}: RLE size {size} differs from video '{video.name}' "
                f"({video.height}x{video.width}); masks and frames must have the same resolution"
            )


# --------------------------------------------------------------------------------------------------- reader


class RevosSplit:
    """A loaded, validated split: metadata in memory, frames and masks decoded on demand.

    Attributes:
        root: dataset root.
        split: split name (``"valid"``, ``"train"``, ...).
        videos: ``{name: VideoMeta}`` in file order.
        meta_path, mask_path: the files the split came from (for messages).
    """

    def __init__(
        self,
        root: Path,
        split: str,
        videos: dict[str, VideoMeta],
        mask_dict: dict[str, list[RLE | None]],
        foreground: dict[str, Any] | None = None,
        meta_path: Path | None = None,
        mask_path: Path | None = None,
        frame_root: Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.videos = videos
        self.mask_dict = mask_dict
        self.foreground = foreground
        self.meta_path = meta_path or self.root / f"meta_expressions_{split}_.json"
        self.mask_path = mask_path or self.root / MASK_DICT
        self.frame_root = Path(frame_root) if frame_root is not None else self.root / FRAME_DIR

    def __repr__(self) -> str:
        return (
            f"RevosSplit(root={display_path(self.root)!r}, split={self.split!r}, videos={len(self.videos)}, "
            f"expressions={self.num_expressions})"
        )

    @property
    def num_expressions(self) -> int:
        """Total number of expressions over all videos."""
        return sum(len(v.expressions) for v in self.videos.values())

    def expressions(self) -> Iterator[tuple[str, Expression]]:
        """Yield ``(video name, Expression)`` for every expression, in file order."""
        for name, video in self.videos.items():
            for exp in video.expressions.values():
                yield name, exp

    def _video(self, video: str) -> VideoMeta:
        try:
            return self.videos[video]
        except KeyError:
            raise KeyError(f"{self.meta_path}: no video named '{video}'") from None

    def frame_path(self, video: str, frame: str | int) -> Path:
        """Path of a frame given by name or index: ``<root>/JPEGImages/<video>/<frame>.jpg``."""
        if isinstance(frame, (int, np.integer)):
            frame = self._video(video).frames[int(frame)]
        return self.frame_root / video / f"{frame}{FRAME_EXT}"

    def read_frame(self, video: str, index: int) -> np.ndarray:
        """Read frame ``index`` of ``video`` as ``uint8 [H, W, 3]`` RGB (cv2 + BGR->RGB, as VISA)."""
        import cv2

        path = self.frame_path(video, index)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(
                f"{path}: frame {index} of video '{video}' is missing or unreadable; "
                f"check that {self.frame_root} holds the JPEG frames of this split"
            )
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def iter_frames(self, video: str) -> Iterator[np.ndarray]:
        """Stream the frames of ``video`` one at a time (``uint8 [H, W, 3]`` RGB); never all in memory."""
        for index in range(len(self._video(video).frames)):
            yield self.read_frame(video, index)

    def check_frames(self) -> None:
        """Raise :class:`DatasetFormatError` naming the first missing frame file and the count."""
        missing = [
            self.frame_path(name, frame)
            for name, video in self.videos.items()
            for frame in video.frames
            if not self.frame_path(name, frame).is_file()
        ]
        if missing:
            raise DatasetFormatError(
                f"{self.meta_path}: {len(missing)} frame file(s) missing, first: {missing[0]}; "
                f"unpack the JPEG frames into {self.frame_root}"
            )

    def _decode(
        self, rles: Sequence[RLE | None], video: VideoMeta, frames: slice, box: Box | None = None
    ) -> np.ndarray:
        return decode_rles(rles[frames], (video.height, video.width), box)

    def _shape(self, meta: VideoMeta, frames: slice, box: Box | None) -> tuple[int, int, int]:
        """``(T, H, W)`` of ``frames``, or of the ``box`` crop of them."""
        rows, cols = box if box is not None else (slice(0, meta.height), slice(0, meta.width))
        return (len(range(*frames.indices(len(meta.frames)))), len(range(*rows.indices(meta.height))),
                len(range(*cols.indices(meta.width))))

    def object_box(self, video: str, frames: slice | None = None) -> tuple[int, int, int, int] | None:
        """``(top, left, bottom, right)`` of a box holding every pixel of the video's objects and foreground
        in ``frames``, read from the RLEs without decoding them (see :func:`rle_box`); ``None``: all empty."""
        meta = self._video(video)
        frames = frames if frames is not None else slice(None)
        rles = [r for a in sorted({a for e in meta.expressions.values() for a in e.anno_ids})
                for r in self.mask_dict[str(a)][frames]]
        if self.foreground is not None and video in self.foreground:
            rles += self.foreground[video]["masks_rle"][frames]
        return rle_box(rles)

    def gt_masks(
        self,
        video: str,
        exp_id: str,
        frames: slice | None = None,
        decoded: dict[int, np.ndarray] | None = None,
        box: Box | None = None,
    ) -> np.ndarray:
        """Ground truth of one expression as VISA's evaluator builds it.

        Args:
            video: video name.
            exp_id: expression key.
            frames: optional slice of frame indices (to bound memory on long videos).
            decoded: ``{anno_id: uint8 [T, H, W]}`` of these frames, filled and reused (the evaluator
                shares it between the expressions of a video that refer to the same objects).
            box: only this crop of each frame (``decoded`` must then hold crops of the same box).

        Returns:
            ``uint8 [T, H, W]``: the SUM over the expression's ``anno_id`` masks (0/1 each), so overlapping
            objects give 2. Use ``> 0`` for the union (OR) that training uses. No target -> all zeros.
        """
        meta = self._video(video)
        if exp_id not in meta.expressions:
            raise KeyError(f"{self.meta_path}: video '{video}' has no expression '{exp_id}'")
        frames = frames if frames is not None else slice(None)
        total = np.zeros(self._shape(meta, frames, box), dtype=np.uint8)
        for anno_id in meta.expressions[exp_id].anno_ids:
            if decoded is None:
                total += self._decode(self.mask_dict[str(anno_id)], meta, frames, box)
                continue
            if anno_id not in decoded:
                decoded[anno_id] = self._decode(self.mask_dict[str(anno_id)], meta, frames, box)
            total += decoded[anno_id]
        return total

    def foreground_masks(self, video: str, frames: slice | None = None, box: Box | None = None) -> np.ndarray:
        """Foreground of a video (union of every object any of its expressions refers to).

        Read from ``mask_dict_foreground.json`` when present, otherwise computed from ``mask_dict.json``
        the same way (``tools/generate_foreground_mask.py``).

        Returns:
            ``uint8 [T, H, W]`` (or ``[T, h, w]`` of ``box``) with values 0/1.
        """
        meta = self._video(video)
        frames = frames if frames is not None else slice(None)
        if self.foreground is not None and video in self.foreground:
            return self._decode(self.foreground[video]["masks_rle"], meta, frames, box)
        union = np.zeros(self._shape(meta, frames, box), dtype=np.uint8)
        for anno_id in sorted({a for e in meta.expressions.values() for a in e.anno_ids}):
            union |= self._decode(self.mask_dict[str(anno_id)], meta, frames, box)
        return union


def _validate_foreground(videos: Mapping[str, VideoMeta], foreground: Any, path: Path) -> None:
    if not isinstance(foreground, dict):
        raise DatasetFormatError(
            f"{path}: expected {{video: {{'masks_rle': [...], 'foreground_ratio': [...]}}}}"
        )
    checked: dict[str, list] = {}
    for name, video in videos.items():
        entry = foreground.get(name)
        if entry is None:
            continue  # computed from mask_dict.json on demand
        if not isinstance(entry, dict) or "masks_rle" not in entry:
            raise DatasetFormatError(f"{path}: video '{name}' lacks the key 'masks_rle'")
        rles = entry["masks_rle"]
        if not isinstance(rles, list) or len(rles) != len(video.frames):
            count = len(rles) if isinstance(rles, list) else type(rles).__name__
            raise DatasetFormatError(
                f"{path}: video '{name}' has {count} foreground masks but {len(video.frames)} frames; "
                f"regenerate {path.name}"
            )
        _check_rle_sizes(rles, video, f"{path}: video '{name}'")
        checked[f"video '{name}' masks_rle"] = rles
    check_rle_counts(checked, path)


def load_revos(root: str | Path, split: str = "valid", check_frames: bool = False) -> RevosSplit:
    """Load and validate a ReVOS-format split.

    Args:
        root: folder holding ``meta_expressions_<split>_.json`` (or without the trailing underscore),
            ``mask_dict.json``, optionally ``mask_dict_foreground.json`` and ``JPEGImages/``.
        split: split name, e.g. ``"valid"`` or ``"train"``.
        check_frames: also check now that every frame file exists (otherwise a missing frame is
            reported when it is read).

    Returns:
        A :class:`RevosSplit`.

    Raises:
        FileNotFoundError: a required file is missing.
        DatasetFormatError: malformed JSON (with line/column), a missing key, an unknown ``anno_id``,
            a mask list whose length differs from the number of frames, an RLE of the wrong size,
            a ``type_id`` outside {0, 1, 2}, or (``check_frames``) missing frame files.
    """
    root = Path(root)
    meta_path = find_meta_file(root, split)
    videos = parse_meta(read_json(meta_path), meta_path)
    mask_path = root / MASK_DICT
    mask_dict = read_json(mask_path)
    validate_masks(videos, mask_dict, meta_path, mask_path)
    foreground = None
    fg_path = root / FOREGROUND_DICT
    if fg_path.is_file():
        foreground = read_json(fg_path)
        _validate_foreground(videos, foreground, fg_path)
    split_obj = RevosSplit(root, split, videos, mask_dict, foreground, meta_path, mask_path)
    if check_frames:
        split_obj.check_frames()
    return split_obj


# --------------------------------------------------------------------------------------------------- writer


def _check_video_name(name: str) -> None:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"video name {name!r} must be a relative path without empty, '.' or '..' parts")


def meta_to_json(videos: Iterable[VideoMeta], with_type: bool = True, with_size: bool = True) -> dict:
    """The ``meta_expressions`` JSON object for ``videos`` (schema in docs/datasets.md)."""
    out: dict[str, Any] = {}
    for video in videos:
        entry: dict[str, Any] = {"frames": list(video.frames), "expressions": {}}
        for exp_id, exp in video.expressions.items():
            item: dict[str, Any] = {
                "exp": exp.text,
                "obj_id": list(exp.obj_ids),
                "anno_id": list(exp.anno_ids),
            }
            if with_type:
                item["type_id"] = int(exp.type_id)
            entry["expressions"][str(exp_id)] = item
        if with_size:
            entry["height"], entry["width"] = int(video.height), int(video.width)
        out[video.name] = entry
    return {"videos": out}


def write_frames(
    frame_root: Path,
    video: VideoMeta,
    frames: Iterable[np.ndarray],
    jpeg_quality: int = 90,
) -> None:
    """Write ``uint8 [H, W, 3]`` RGB frames as ``frame_root/<video>/<frame>.jpg``, one at a time."""
    from PIL import Image

    _check_video_name(video.name)
    folder = Path(frame_root) / video.name
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for index, frame in enumerate(frames):
        if index >= len(video.frames):
            raise ValueError(f"video '{video.name}': more frames given than the {len(video.frames)} listed")
        frame = np.asarray(frame)
        if frame.shape != (video.height, video.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"video '{video.name}' frame {index}: expected uint8 [{video.height}, {video.width}, 3], "
                f"got {frame.dtype} {list(frame.shape)}"
            )
        Image.fromarray(frame).save(folder / f"{video.frames[index]}{FRAME_EXT}", quality=int(jpeg_quality))
        count += 1
    if count != len(video.frames):
        raise ValueError(f"video '{video.name}': {count} frames given, {len(video.frames)} listed")


def _merge_dict(existing: dict, new: Mapping, path: Path, what: str) -> None:
    for key, value in new.items():
        if key in existing and existing[key] != value:
            raise ValueError(
                f"{path}: {what} {key} already exists with different content; write into a fresh root "
                "or use distinct ids"
            )
        existing[key] = value


def write_revos_split(
    root: str | Path,
    split: str,
    videos: list[VideoMeta],
    anno_masks: Mapping[int, np.ndarray],
    frames: Mapping[str, Iterable[np.ndarray]] | None = None,
    jpeg_quality: int = 90,
) -> Path:
    """Write one split in ReVOS format, merging its masks into the root's shared mask files.

    Args:
        root: dataset root (created if needed).
        split: split name; the metadata goes to ``meta_expressions_<split>_.json`` (overwritten).
        videos: the videos with their expressions; ``height``/``width`` must be set.
        anno_masks: ``{anno_id: bool [T, H, W]}`` for every ``anno_id`` any expression references.
        frames: optional ``{video name: iterable of uint8 [H, W, 3] RGB}`` written as JPEGs (streamed).
        jpeg_quality: JPEG quality of the frames.

    Returns:
        Path of the written ``meta_expressions`` file.

    Merging: ``mask_dict.json`` and ``mask_dict_foreground.json`` are shared by all splits of a root
    (as in the real ReVOS), so entries are added to what is there; an ``anno_id`` (or video) that
    already exists with different content raises ``ValueError``. The foreground of a video is the
    union of every ``anno_id`` its expressions reference.
    """
    root = Path(root)
    new_masks: dict[str, list[RLE | None]] = {}
    new_fg: dict[str, Any] = {}
    for video in videos:
        _check_video_name(video.name)
        shape = (len(video.frames), video.height, video.width)
        union = np.zeros(shape, dtype=bool)
        for exp in video.expressions.values():
            if exp.type_id not in TYPE_NAMES:
                raise ValueError(f"video '{video.name}' expression '{exp.exp_id}': type_id must be 0, 1 or 2")
            for anno_id in exp.anno_ids:
                if anno_id not in anno_masks:
                    raise ValueError(
                        f"video '{video.name}' expression '{exp.exp_id}': anno_id {anno_id} has no mask in "
                        "anno_masks"
                    )
                masks = np.asarray(anno_masks[anno_id])
                if masks.shape != shape:
                    raise ValueError(
                        f"anno_masks[{anno_id}]: shape {list(masks.shape)} differs from video "
                        f"'{video.name}' {list(shape)} ([T, H, W])"
                    )
                union |= masks != 0
                rles = encode_video_rle(masks)
                if str(anno_id) in new_masks and new_masks[str(anno_id)] != rles:
                    raise ValueError(f"anno_id {anno_id} is used by two videos with different masks")
                new_masks[str(anno_id)] = rles
        area = float(video.height * video.width)
        new_fg[video.name] = {
            "masks_rle": [encode_rle(frame) for frame in union],
            "foreground_ratio": [round(float(frame.sum()) / area, 6) for frame in union],
        }

    mask_path, fg_path = root / MASK_DICT, root / FOREGROUND_DICT
    mask_dict = read_json(mask_path) if mask_path.is_file() else {}
    foreground = read_json(fg_path) if fg_path.is_file() else {}
    _merge_dict(mask_dict, new_masks, mask_path, "anno_id")
    _merge_dict(foreground, new_fg, fg_path, "video")

    if frames is not None:
        by_name = {v.name: v for v in videos}
        for name, video_frames in frames.items():
            if name not in by_name:
                raise ValueError(f"frames given for video '{name}', which is not in `videos`")
            write_frames(root / FRAME_DIR, by_name[name], video_frames, jpeg_quality)

    write_json(mask_path, mask_dict)
    write_json(fg_path, foreground)
    meta_path = root / f"meta_expressions_{split}_.json"
    write_json(meta_path, meta_to_json(videos), indent=1)
    return meta_path
