"""Propagate a mask through a video with XMem, forwards, backwards or both ways from a start frame.

This is VISA's last step: the mask that the multi-modal LLM + SAM produced on the target frame is tracked to
every other frame. As in VISA, the two directions are two *independent* XMem runs that both start fresh at
``start`` (its memory holds only the given mask at first); their results are merged (they overlap only at
``start``, where both return the given mask).

Frames may be a uint8 array ``[T, H, W, 3]`` or any sequence with ``len`` and indexing that yields uint8
``[H, W, 3]`` frames (e.g. a lazy video reader): frames are read, resized and released one at a time, so a
long video is never held at full resolution. A plain iterator (no ``len``) works for ``direction="forward"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from visa_lib.xmem.inference import InferenceCore, XMemTracker
from visa_lib.xmem.processing import (
    labels_from_probabilities,
    normalize_frame,
    postprocess_probabilities,
    resize_mask,
)

DIRECTIONS = ("forward", "backward", "both")


def _objects_from_mask(mask: np.ndarray) -> tuple[np.ndarray, str, np.ndarray | None]:
    """Split the user's mask into one-hot planes.

    Returns:
        (planes bool ``[K, H, W]``, kind "single" | "stack" | "labels", label values or None).
    """
    mask = np.asarray(mask)
    if mask.dtype == bool and mask.ndim == 2:
        return mask[None], "single", None
    if mask.dtype == bool and mask.ndim == 3:
        return mask, "stack", None
    if np.issubdtype(mask.dtype, np.integer) and mask.ndim == 2:
        labels = np.unique(mask)
        labels = labels[labels != 0]
        return np.stack([mask == v for v in labels]) if len(labels) else mask[None] != 0, "labels", labels
    raise TypeError(
        f"propagate: mask must be bool [H, W] (one object), bool [K, H, W] (K objects) or an integer label "
        f"map [H, W] (0 = background); got dtype {mask.dtype} shape {mask.shape}. "
        "Threshold probabilities first (mask > 0.5)."
    )


def _check_frame(frame: Any, index: int, shape: tuple[int, int]) -> np.ndarray:
    f = np.asarray(frame)
    if f.dtype != np.uint8 or f.ndim != 3 or f.shape[-1] != 3:
        raise TypeError(
            f"propagate: frame {index} must be uint8 RGB [H, W, 3], got dtype {f.dtype} shape {f.shape}"
        )
    if f.shape[:2] != shape:
        raise ValueError(
            f"propagate: frame {index} is {f.shape[0]}x{f.shape[1]} but the mask is {shape[0]}x{shape[1]}; "
            "resize the mask (nearest) to the frame size"
        )
    return f


def track(
    frames: np.ndarray | Sequence[np.ndarray] | Iterable[np.ndarray],
    mask: np.ndarray,
    start: int,
    tracker: XMemTracker,
    reverse: bool = False,
    size: int | None = None,
    session: InferenceCore | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """One fresh XMem run from frame ``start``, one frame at a time (SAM 2's ``propagate_in_video``).

    Args:
        frames: uint8 ``[T, H, W, 3]``, a sequence of uint8 ``[H, W, 3]`` frames (read lazily), or, with
            ``reverse=False``, an iterator of frames (frames before ``start`` are skipped).
        mask: bool ``[H, W]`` (one object) or bool ``[K, H, W]`` (K objects tracked jointly) on ``start``.
        start (int): the annotated frame (non-negative).
        tracker (XMemTracker): network + memory settings.
        reverse (bool): walk ``start, start-1, ..., 0`` instead of ``start, ..., T-1``.
        size (int | None): shorter side XMem works at (default ``tracker.memory.size``; -1 = native).
        session (InferenceCore | None): a session to run in (e.g. to read its ``history`` afterwards);
            default a fresh one.

    Yields:
        ``(frame index, probabilities float32 [K+1, H, W])`` in processing order; channel 0 is the
        background, so ``probabilities.argmax(0) == k + 1`` is object k's mask.
    """
    planes = np.asarray(mask)
    planes = planes[None] if planes.ndim == 2 else planes
    if planes.dtype != bool or planes.ndim != 3:
        raise TypeError(f"track: mask must be bool [H, W] or [K, H, W], got {planes.dtype} {planes.shape}")
    if start < 0:
        raise ValueError(f"track: start must be >= 0, got {start}")
    size = tracker.memory.size if size is None else int(size)
    if hasattr(frames, "__len__") and hasattr(frames, "__getitem__"):
        num_frames = len(frames)  # type: ignore[arg-type]
        if start >= num_frames:
            raise ValueError(f"track: start={start} is out of range for a video of {num_frames} frames")
        order = range(start, -1, -1) if reverse else range(start, num_frames)
        items: Iterator[tuple[int, Any]] = ((i, frames[i]) for i in order)  # type: ignore[index]
        length = len(order)
    elif reverse:
        raise TypeError("track: frames without len()/indexing can only be walked forwards")
    else:
        # Unknown length: the last frame cannot be flagged as such. That only decides whether it is
        # memorised, which no later frame can read, so the masks are the same.
        items = ((i, f) for i, f in enumerate(frames) if i >= start)
        length = -1
    cfg = tracker.memory if size == tracker.memory.size else tracker.memory.with_(size=size)
    if session is None:
        session = InferenceCore(tracker.network, cfg, num_frames=length if length > 0 else None)
    shape = planes.shape[1:]
    for n, (index, frame) in enumerate(items):
        image = normalize_frame(_check_frame(frame, index, shape), size).to(tracker.device)
        given = None
        if n == 0:
            given = resize_mask(torch.from_numpy(planes).float(), tuple(image.shape[-2:])).to(tracker.device)
        prob = session.step(image, given, end=(n == length - 1))
        yield index, postprocess_probabilities(prob, shape).float().cpu()


def track_both_ways(
    frames: np.ndarray | Sequence[np.ndarray],
    mask: np.ndarray,
    start: int,
    tracker: XMemTracker,
    size: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """VISA's two XMem runs from ``start``, yielding every frame's mask once, as soon as it is known.

    The backward run comes first (``start, start-1, ..., 0``), then the forward run (``start+1, ..., T-1``);
    the two are independent fresh runs, so the order does not change any mask (``start`` comes out of both
    identically). Nothing is kept between frames: a caller that writes each mask away holds one frame.

    Args:
        frames: uint8 ``[T, H, W, 3]`` or a sequence of uint8 ``[H, W, 3]`` frames (read lazily).
        mask: bool ``[H, W]``, the object on frame ``start``.
        start (int): the annotated frame (``0 <= start < T``).
        tracker (XMemTracker): network + memory settings.
        size (int | None): as :func:`propagate`.

    Yields:
        ``(frame index, bool [H, W])``, each index in ``0..T-1`` exactly once.
    """
    for reverse in (True, False):
        for index, prob in track(frames, mask, start, tracker, reverse=reverse, size=size):
            if reverse or index != start:
                yield index, labels_from_probabilities(prob).numpy() == 1


def propagate(
    frames: np.ndarray | Sequence[np.ndarray] | Iterable[np.ndarray],
    mask: np.ndarray,
    start: int,
    tracker: XMemTracker,
    direction: str = "both",
    return_probabilities: bool = False,
    size: int | None = None,
    progress: bool = True,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Track ``mask`` (given on frame ``start``) through the video.

    Args:
        frames: uint8 ``[T, H, W, 3]`` array, or a sequence of uint8 ``[H, W, 3]`` frames (read lazily,
            one at a time), or an iterator of frames (``direction="forward"`` only; frames before
            ``start`` are skipped).
        mask: the object(s) on frame ``start``: bool ``[H, W]``; bool ``[K, H, W]`` for K objects
            tracked jointly; or an integer label map ``[H, W]`` (0 = background).
        start (int): index of the annotated frame (negative counts from the end, as in Python).
        tracker (XMemTracker): network + memory settings (``XMemTracker.toy()`` or
            ``XMemTracker.official(path)``).
        direction (str): "forward" (start -> last), "backward" (start -> 0) or "both".
        return_probabilities (bool): also return the foreground probabilities.
        size (int | None): shorter side XMem works at (default: ``tracker.memory.size``; 480 official, 120
            toy); -1 = native. Memory/time grow with its square.
        progress (bool): show a tqdm bar.

    Returns:
        masks: bool ``[T, H, W]`` for a bool ``[H, W]`` mask; bool ``[K, T, H, W]`` for ``[K, H, W]``;
        an integer label map ``[T, H, W]`` (same labels) for a label map. Frames outside the propagated
        range are empty.
        With ``return_probabilities``: ``(masks, probabilities)``, float32 ``[T, H, W]`` (one object) or
        ``[K, T, H, W]``.

    Raises:
        ValueError / TypeError: bad direction, start out of range, wrong dtype, mask/frame size mismatch.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"propagate: direction must be one of {DIRECTIONS}, got {direction!r}")
    planes, kind, labels = _objects_from_mask(mask)
    h, w = planes.shape[1:]
    size = tracker.memory.size if size is None else int(size)

    indexable = hasattr(frames, "__len__") and hasattr(frames, "__getitem__")
    if not indexable and direction != "forward":
        raise TypeError(
            "propagate: frames without len()/indexing can only be streamed forwards; pass a sequence "
            "(e.g. a list-like lazy reader) for direction='backward' or 'both'"
        )
    num_frames = len(frames) if indexable else None  # type: ignore[arg-type]
    if num_frames is not None:
        if num_frames == 0:
            raise ValueError("propagate: the video has no frames")
        if not -num_frames <= start < num_frames:
            raise ValueError(f"propagate: start={start} is out of range for a video of {num_frames} frames")
        start %= num_frames
    elif start < 0:
        raise ValueError("propagate: a negative start needs frames with len()")

    k = planes.shape[0]
    empty = not planes.any()
    if empty:
        warnings.warn(
            "propagate: the given mask is empty; returning empty masks for every frame", stacklevel=2
        )

    outputs: dict[int, torch.Tensor] = {}
    if not empty:
        runs = {"forward": [False], "backward": [True], "both": [False, True]}[direction]
        total = None if num_frames is None else sum(start + 1 if r else num_frames - start for r in runs)
        with tqdm(total=total, desc=f"XMem {direction}", disable=not progress, leave=None) as bar:
            for reverse in runs:
                for index, prob in track(frames, planes, start, tracker, reverse=reverse, size=size):
                    # The start frame comes out of both passes identically; keep the first.
                    outputs.setdefault(index, prob)
                    bar.update(1)
        if num_frames is None:
            num_frames = max(outputs) + 1 if outputs else 0
            if start >= num_frames:
                raise ValueError(
                    f"propagate: start={start} is beyond the end of the stream ({num_frames} frames)"
                )
    assert num_frames is not None

    labels_out = np.zeros((num_frames, h, w), np.int64)
    probs_out = np.zeros((k, num_frames, h, w), np.float32) if return_probabilities else None
    for index, prob in outputs.items():
        labels_out[index] = labels_from_probabilities(prob).numpy()
        if probs_out is not None:
            probs_out[:, index] = prob[1:].numpy()

    if kind == "single":
        masks: np.ndarray = labels_out == 1
        probs = probs_out[0] if probs_out is not None else None
    elif kind == "stack":
        masks = np.stack([labels_out == i + 1 for i in range(k)])
        probs = probs_out
    else:
        lut = np.concatenate([[0], labels if labels is not None and len(labels) else [0]]).astype(
            np.asarray(mask).dtype
        )
        masks = lut[labels_out]
        probs = probs_out
    return (masks, probs) if return_probabilities else masks  # type: ignore[return-value]
