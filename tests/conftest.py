"""Shared fixtures: tiny datasets written with the library's own writers (milliseconds, no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visa_lib.data.revos import Expression, VideoMeta, write_revos_split

#: (name, frames, height, width) of the two videos in ``tiny_revos``; non-square, nested names.
TINY_VIDEOS = (("TAO/seq_a", 5, 24, 32), ("MOSE/seq_b", 4, 20, 28))


def _box(shape: tuple[int, int, int], top: int, left: int, size: int, step: int) -> np.ndarray:
    """bool [T, H, W]: a square of side ``size`` that moves ``step`` px right per frame."""
    masks = np.zeros(shape, dtype=bool)
    for t in range(shape[0]):
        masks[t, top : top + size, left + t * step : left + t * step + size] = True
    return masks


def make_tiny_revos(root: Path, split: str = "valid") -> Path:
    """Write a 2-video ReVOS split into ``root`` and return ``root``.

    Video ``TAO/seq_a`` (5 frames, 24x32): anno 1 and anno 2 overlap; expressions "0" (type 0, anno
    [1]), "1" (type 1, anno [1, 2], sum 2 on the overlap), "2" (type 2, no target).
    Video ``MOSE/seq_b`` (4 frames, 20x28): anno 3 is absent in frame 0 (a null RLE); expressions "0"
    (type 0) and "1" (type 1), both anno [3].
    """
    (name_a, t_a, h_a, w_a), (name_b, t_b, h_b, w_b) = TINY_VIDEOS
    anno = {
        1: _box((t_a, h_a, w_a), 4, 2, 8, 3),
        2: _box((t_a, h_a, w_a), 8, 6, 8, 2),
        3: _box((t_b, h_b, w_b), 6, 4, 6, 2),
    }
    anno[3][0] = False
    videos = [
        VideoMeta(
            name_a,
            [f"{i:05d}" for i in range(t_a)],
            {
                "0": Expression("0", "the left square", [0], [1], 0),
                "1": Expression("1", "which squares could be stacked?", [0, 1], [1, 2], 1),
                "2": Expression("2", "the purple elephant", [], [], 2),
            },
            h_a,
            w_a,
        ),
        VideoMeta(
            name_b,
            [f"{i:05d}" for i in range(t_b)],
            {
                "0": Expression("0", "the square", [0], [3], 0),
                "1": Expression("1", "what appears after the first frame?", [0], [3], 1),
            },
            h_b,
            w_b,
        ),
    ]
    rng = np.random.default_rng(0)
    frames = {}
    for video in videos:
        union = np.zeros((len(video.frames), video.height, video.width), dtype=bool)
        for exp in video.expressions.values():
            for anno_id in exp.anno_ids:
                union |= anno[anno_id]
        images = rng.integers(0, 60, (*union.shape, 3), dtype=np.uint8)
        images[union] = (220, 40, 40)
        frames[video.name] = list(images)
    write_revos_split(root, split, videos, anno, frames)
    return Path(root)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module (tiny models are slower with more; CI has 2 shared cores).

    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_revos(tmp_path: Path) -> Path:
    """Root of a tiny 2-video ReVOS ``valid`` split (see :func:`make_tiny_revos`) in ``tmp_path``."""
    return make_tiny_revos(tmp_path / "tiny_revos")


@pytest.fixture
def tiny_revos_split(tiny_revos: Path):
    """The ``tiny_revos`` split loaded with :func:`visa_lib.data.revos.load_revos` (a ``RevosSplit``)."""
    from visa_lib.data.revos import load_revos

    return load_revos(tiny_revos, "valid", check_frames=True)


def flat_colour_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """uint8 [T, H, W, 3] frames of one grey level each (``3 * t``, survives H.264 to within +-2)."""
    levels = 3 * np.arange(count, dtype=np.uint8)
    return np.ascontiguousarray(np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)))
