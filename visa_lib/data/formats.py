"""MeViS, LV-VIS, Ref-YouTube-VOS and Ref-DAVIS17 in VISA's layouts, loaded into the same :class:`RevosSplit`.

MeViS (``mevis/valid_u`` is VISA's validation split, ``mevis/valid`` its server-scored test split,
``mevis/train`` its training split) and LV-VIS (``lvvis/train``, converted to the same layout)::

    <split>/JPEGImages/<video>/<frame>.jpg
    <split>/meta_expressions.json     {"videos": {video: {"frames", "expressions": {id: {"exp", "obj_id",
                                                                                        "anno_id"}}}}}
    <split>/mask_dict.json            {str(anno_id): [RLE or null per frame]}

The ground truth of an expression is the SUM of its ``anno_id`` masks, as for ReVOS (single-object
expressions have one ``anno_id``, multi-object ones several). There is no ``type_id`` (all expressions
count as one set) and no ``height``/``width`` (taken from the masks). LV-VIS expressions are category
names such as ``"traffic_light"``; :func:`load_lvvis` turns ``_`` into spaces, as VISA's training does.

Ref-YouTube-VOS and Ref-DAVIS17::

    <split>/JPEGImages/<video>/<frame>.jpg
    <split>/meta_expressions.json     {"videos": {video: {"frames", "expressions": {id: {"exp", ...}}}}}
        (or, as the datasets are published, meta_expressions/<split>/meta_expressions.json)
    <split>/mask_dict.pkl (or .json)  {str(k): [RLE or null per frame]}

where ``k`` numbers the expressions in the order: videos sorted by name, then the expression ids of each
video sorted AS STRINGS ("0", "1", "10", "2", ...) (docs/datasets.md). One object per expression. A
``.pkl`` is read with :func:`visa_lib.data.safe_pickle.load_pickle`, which admits plain data only and never
runs code from the file (``.json`` is preferred when both exist).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from visa_lib.data.revos import (
    FRAME_DIR,
    MASK_DICT,
    DatasetFormatError,
    RevosSplit,
    VideoMeta,
    meta_to_json,
    parse_meta,
    read_json,
    validate_masks,
    write_frames,
    write_json,
)
from visa_lib.data.rle import encode_video_rle
from visa_lib.data.safe_pickle import load_pickle

META_FILE = "meta_expressions.json"


def _split_dir(root: Path, split: str) -> tuple[Path, Path]:
    """``(meta file, split folder)`` of a split, in any of the spellings the datasets are published in.

    The meta file is ``root/<split>/meta_expressions.json``, ``root/meta_expressions/<split>/
    meta_expressions.json`` (Ref-YouTube-VOS, Ref-DAVIS17 as released) or ``root/meta_expressions.json``
    (``root`` is the split folder itself); the split folder holds ``JPEGImages/`` and the mask file.
    """
    root = Path(root)
    candidates = (
        (root / split / META_FILE, root / split),
        (root / "meta_expressions" / split / META_FILE, root / split),
        (root / META_FILE, root),
    )
    for meta_path, folder in candidates:
        if meta_path.is_file():
            return meta_path, folder
    raise FileNotFoundError(
        f"{root}: no {META_FILE} in {root / split}, {root / 'meta_expressions' / split} or {root}; pass the "
        "dataset folder as --data-root and the split folder name as --split"
    )


def _fill_unknown_sizes(split: RevosSplit) -> None:
    """Videos whose masks are all null get their size from their first frame (PIL reads only the header)."""
    from PIL import Image

    for name, video in split.videos.items():
        if video.height > 0:
            continue
        path = split.frame_path(name, 0)
        try:
            with Image.open(path) as image:
                video.width, video.height = image.size
        except OSError:
            raise DatasetFormatError(
                f"{split.meta_path}: the size of video '{name}' is unknown (no non-empty mask and no "
                f"readable frame {path}); add the frames or 'height'/'width' to the meta file"
            ) from None


def _split_of(
    folder: Path,
    split: str,
    videos: dict[str, VideoMeta],
    mask_dict: Any,
    meta_path: Path,
    mask_path: Path,
    check_frames: bool,
) -> RevosSplit:
    """Validate the masks against the meta file and wrap both in a :class:`RevosSplit`."""
    validate_masks(videos, mask_dict, meta_path, mask_path)
    result = RevosSplit(folder, split, videos, mask_dict, None, meta_path, mask_path, folder / FRAME_DIR)
    _fill_unknown_sizes(result)
    if check_frames:
        result.check_frames()
    return result


def _load_mevis_layout(root: str | Path, split: str, check_frames: bool, missing_hint: str) -> RevosSplit:
    meta_path, folder = _split_dir(Path(root), split)
    videos = parse_meta(read_json(meta_path), meta_path, require_type=False, require_size=False)
    mask_path = folder / MASK_DICT
    if not mask_path.is_file():
        raise FileNotFoundError(f"{mask_path}: file not found; {missing_hint}")
    mask_dict = read_json(mask_path)
    return _split_of(folder, split, videos, mask_dict, meta_path, mask_path, check_frames)


def load_mevis(root: str | Path, split: str = "valid_u", check_frames: bool = False) -> RevosSplit:
    """Load and validate a MeViS split (same validation as :func:`~visa_lib.data.revos.load_revos`).

    Args:
        root: the MeViS folder holding ``<split>/``, or the split folder itself.
        split: ``"valid_u"`` (VISA's validation), ``"valid"`` or ``"train"``.
        check_frames: check now that every frame file exists.

    Returns:
        A :class:`RevosSplit`; every expression has ``type_id`` 0.
    """
    return _load_mevis_layout(
        root,
        split,
        check_frames,
        "MeViS 'valid' has no public ground truth (it is scored by the challenge server), evaluate on "
        "'valid_u' instead",
    )


def load_lvvis(root: str | Path, split: str = "train", check_frames: bool = False) -> RevosSplit:
    """Load and validate an LV-VIS split in VISA's layout (the MeViS layout, see the module docstring).

    Args:
        root: the LV-VIS folder holding ``<split>/``, or the split folder itself.
        split: ``"train"`` (the split VISA trains on).
        check_frames: check now that every frame file exists.

    Returns:
        A :class:`RevosSplit` whose expression texts have ``_`` replaced by spaces ("traffic light").
    """
    result = _load_mevis_layout(
        root, split, check_frames, "LV-VIS in VISA's layout needs mask_dict.json beside meta_expressions.json"
    )
    for _, expression in result.expressions():
        expression.text = expression.text.replace("_", " ")
    return result


def davis17_expression_order(meta_videos: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(video, exp_id)`` in the order that numbers Ref-DAVIS17 / Ref-YouTube-VOS ``mask_dict`` keys.

    Args:
        meta_videos: the ``"videos"`` object of ``meta_expressions.json`` (or ``{name: VideoMeta}``).

    Returns:
        The list whose position ``k`` is the expression stored under key ``str(k)``: videos sorted by name,
        expression ids sorted as strings.
    """
    order = []
    for video in sorted(meta_videos):
        entry = meta_videos[video]
        expressions = entry.expressions if isinstance(entry, VideoMeta) else entry["expressions"]
        for exp_id in sorted(str(e) for e in expressions):
            order.append((video, exp_id))
    return order


def _load_ytvos_layout(root: str | Path, split: str, check_frames: bool) -> RevosSplit:
    meta_path, folder = _split_dir(Path(root), split)
    raw = read_json(meta_path)
    if not isinstance(raw, dict) or not isinstance(raw.get("videos"), dict):
        raise DatasetFormatError(f"{meta_path}: missing top-level key 'videos'")
    for video, entry in raw["videos"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("expressions"), dict):
            raise DatasetFormatError(f"{meta_path}: video '{video}' lacks an 'expressions' object")
    for index, (video, exp_id) in enumerate(davis17_expression_order(raw["videos"])):
        expression = raw["videos"][video]["expressions"][exp_id]
        if not isinstance(expression, dict):
            raise DatasetFormatError(f"{meta_path}: video '{video}' expression '{exp_id}' is not an object")
        expression["anno_id"] = [index]
    videos = parse_meta(raw, meta_path, require_type=False, require_size=False)

    json_path, pkl_path = folder / "mask_dict.json", folder / "mask_dict.pkl"
    if json_path.is_file():
        mask_path, mask_dict = json_path, read_json(json_path)
    elif pkl_path.is_file():
        mask_path = pkl_path
        try:
            mask_dict = load_pickle(pkl_path)
        except ValueError as err:  # UnsafePickleError included: nothing from the file ran
            raise DatasetFormatError(str(err)) from None
        mask_dict = {str(k): v for k, v in mask_dict.items()} if isinstance(mask_dict, dict) else mask_dict
    else:
        raise FileNotFoundError(f"{folder}: neither mask_dict.json nor mask_dict.pkl found")
    return _split_of(folder, split, videos, mask_dict, meta_path, mask_path, check_frames)


def load_davis17(root: str | Path, split: str = "valid", check_frames: bool = False) -> RevosSplit:
    """Load and validate a Ref-DAVIS17 split; ``anno_ids`` become the running expression index.

    Args:
        root: the Ref-DAVIS17 folder holding ``<split>/``, or the split folder itself.
        split: ``"valid"`` or ``"train"``.
        check_frames: check now that every frame file exists.

    Returns:
        A :class:`RevosSplit` whose expressions each have ``anno_ids == [k]`` (see the module docstring).
    """
    return _load_ytvos_layout(root, split, check_frames)


def load_refytvos(root: str | Path, split: str = "train", check_frames: bool = False) -> RevosSplit:
    """Load and validate a Ref-YouTube-VOS split (same layout and numbering as Ref-DAVIS17).

    Args:
        root: the Ref-YouTube-VOS folder holding ``<split>/`` (and possibly ``meta_expressions/<split>/``),
            or the split folder itself.
        split: ``"train"`` (``"valid"`` has no public masks; it is scored by the challenge server).
        check_frames: check now that every frame file exists.

    Returns:
        A :class:`RevosSplit` whose expressions each have ``anno_ids == [k]``.
    """
    return _load_ytvos_layout(root, split, check_frames)


# --------------------------------------------------------------------------------------------------- writers


def _write_frames(
    folder: Path, videos: list[VideoMeta], frames: Mapping[str, Iterable[np.ndarray]] | None
) -> None:
    if frames is None:
        return
    by_name = {v.name: v for v in videos}
    for name, video_frames in frames.items():
        if name not in by_name:
            raise ValueError(f"frames given for video '{name}', which is not in `videos`")
        write_frames(folder / FRAME_DIR, by_name[name], video_frames)


def _check_shape(masks: np.ndarray, video: VideoMeta, what: str) -> np.ndarray:
    masks = np.asarray(masks)
    shape = (len(video.frames), video.height, video.width)
    if masks.shape != shape:
        raise ValueError(f"{what}: shape {list(masks.shape)} differs from video '{video.name}' {list(shape)}")
    return masks


def write_mevis_split(
    root: str | Path,
    split: str,
    videos: list[VideoMeta],
    anno_masks: Mapping[int, np.ndarray],
    frames: Mapping[str, Iterable[np.ndarray]] | None = None,
) -> Path:
    """Write a MeViS-layout split ``root/<split>/`` (meta without ``type_id``/size, masks, frames).

    Args:
        root: MeViS folder; the split goes to ``root/<split>/`` (overwritten).
        split: split folder name, e.g. ``"valid_u"``.
        videos: videos with their expressions (``anno_ids`` index ``anno_masks``).
        anno_masks: ``{anno_id: bool [T, H, W]}``.
        frames: optional ``{video: iterable of uint8 [H, W, 3] RGB}``.

    Returns:
        The split folder.
    """
    folder = Path(root) / split
    mask_dict: dict[str, Any] = {}
    for video in videos:
        for exp in video.expressions.values():
            for anno_id in exp.anno_ids:
                if anno_id not in anno_masks:
                    raise ValueError(
                        f"video '{video.name}' expression '{exp.exp_id}': no mask for anno_id {anno_id}"
                    )
                masks = _check_shape(anno_masks[anno_id], video, f"anno_masks[{anno_id}]")
                # Every frame gets an RLE (never null) so the loader can read the size from the masks.
                mask_dict[str(anno_id)] = encode_video_rle(masks, empty_as_none=False)
    _write_frames(folder, videos, frames)
    write_json(folder / MASK_DICT, mask_dict)
    write_json(folder / META_FILE, meta_to_json(videos, with_type=False, with_size=False), indent=1)
    return folder


def write_davis17_split(
    root: str | Path,
    split: str,
    videos: list[VideoMeta],
    masks: Mapping[tuple[str, str], np.ndarray],
    frames: Mapping[str, Iterable[np.ndarray]] | None = None,
    fmt: str = "pkl",
) -> Path:
    """Write a Ref-DAVIS17-layout split ``root/<split>/`` with ``mask_dict`` keyed by the running index.

    Args:
        root: Ref-DAVIS17 folder; the split goes to ``root/<split>/`` (overwritten).
        split: split folder name, e.g. ``"valid"``.
        videos: videos with their expressions (their ``anno_ids`` are ignored).
        masks: ``{(video, exp_id): bool [T, H, W]}`` for every expression.
        frames: optional ``{video: iterable of uint8 [H, W, 3] RGB}``.
        fmt: ``"pkl"`` (as shipped) or ``"json"``.

    Returns:
        The split folder.
    """
    if fmt not in ("pkl", "json"):
        raise ValueError(f"fmt must be 'pkl' or 'json', got {fmt!r}")
    folder = Path(root) / split
    by_name = {v.name: v for v in videos}
    mask_dict: dict[str, Any] = {}
    for index, (name, exp_id) in enumerate(davis17_expression_order(by_name)):
        if (name, exp_id) not in masks:
            raise ValueError(f"masks: no entry for video '{name}' expression '{exp_id}'")
        stack = _check_shape(masks[(name, exp_id)], by_name[name], f"masks[({name!r}, {exp_id!r})]")
        mask_dict[str(index)] = encode_video_rle(stack, empty_as_none=False)
    _write_frames(folder, videos, frames)
    meta = {"videos": {}}
    for video in videos:
        meta["videos"][video.name] = {
            "frames": list(video.frames),
            "expressions": {
                eid: {"exp": e.text, "obj_id": str(e.obj_ids[0]) if e.obj_ids else "1"}
                for eid, e in video.expressions.items()
            },
        }
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        write_json(folder / "mask_dict.json", mask_dict)
    else:
        with open(folder / "mask_dict.pkl", "wb") as fh:
            pickle.dump(mask_dict, fh)
    write_json(folder / META_FILE, meta, indent=1)
    return folder
