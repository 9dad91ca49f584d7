"""VideoFrames on video files: decord (when installed) and PyAV give the same frames in any access order;
a 1-frame video works; a damaged file warns with both frame counts; unreadable files are one-line errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import flat_colour_frames

from visa_lib.data.video import BLOCK_FRAMES, VideoFrames, default_backend, write_video_file

BACKENDS = ["pyav"] + (["decord"] if importlib.util.find_spec("decord") else [])


def _levels(frames: np.ndarray) -> list[int]:
    """The grey level index of each frame of ``flat_colour_frames`` (level = 3 t)."""
    return [round(float(f.mean()) / 3) for f in np.asarray(frames).reshape(-1, *frames.shape[-3:])]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 40-frame mp4 and mkv (key frame every 12, B-frames) of known grey levels."""
    folder = tmp_path_factory.mktemp("videos")
    frames = flat_colour_frames(40)
    return {ext: write_video_file(folder / f"clip.{ext}", frames) for ext in ("mp4", "mkv")}


def test_decord_is_the_default_where_it_is_installed():
    assert default_backend() == ("decord" if "decord" in BACKENDS else "pyav")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_any_access_order_gives_the_right_frames(clip, backend, ext):
    video = VideoFrames(clip[ext], backend=backend)
    assert len(video) == 40 and (video.height, video.width) == (48, 64) and video.backend == backend
    assert _levels(video[list(range(40))]) == list(range(40))  # batched
    order = [39, 3, 25, 26, 27, 10, 0, 38, 20]  # random access, across key frames
    assert [_levels(video[t][None])[0] for t in order] == order
    backward = [_levels(video[t][None])[0] for t in range(30, -1, -1)]  # XMem's backward pass
    assert backward == list(range(30, -1, -1))
    assert _levels(video[5:40:7]) == list(range(5, 40, 7)) and _levels(video[[7, 2, 7]]) == [7, 2, 7]
    assert _levels(video[-1][None]) == [39]
    frame = video[4]
    frame[:] = 0  # a caller writing into its frame must not change what the next read returns
    assert _levels(video[4][None]) == [4]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_a_one_frame_video_works(tmp_path, backend, ext):
    path = write_video_file(tmp_path / f"one.{ext}", flat_colour_frames(1, 24, 32) + 90)
    video = VideoFrames(path, backend=backend)
    assert len(video) == 1 and video[0].shape == (24, 32, 3) and abs(float(video[0].mean()) - 90) < 3
    assert video[0:1].shape == (1, 24, 32, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_file_damaged_mid_stream_warns_with_both_frame_counts(tmp_path, backend):
    """decord hands a damaged file to PyAV, whose sequential decode gives a stable count."""
    rng = np.random.default_rng(0)  # noise: every frame costs bytes, so the damage falls mid-stream
    frames = rng.integers(0, 256, (120, 48, 64, 3), dtype=np.uint8)
    data = bytearray(write_video_file(tmp_path / "good.mp4", frames).read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = bytes(third)
    (tmp_path / "damaged.mp4").write_bytes(bytes(data))
    message = r"damaged\.mp4: the container reports 120 frames but only (\d+) decode"
    with pytest.warns(UserWarning, match=message):
        video = VideoFrames(tmp_path / "damaged.mp4", backend=backend)
    assert 0 < len(video) < 120 and video.backend == "pyav"
    good = VideoFrames(tmp_path / "good.mp4", backend=backend)
    last = len(video) - 1
    assert np.array_equal(video[last], good[last]) and np.array_equal(video[0], good[0])
    with pytest.raises(IndexError, match=f"outside the {len(video)} frames"):
        video[len(video)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_unreadable_files_are_one_line_errors_naming_the_file(tmp_path, backend):
    (tmp_path / "noise.mp4").write_bytes(b"not a video at all" * 100)
    with pytest.raises(ValueError, match=r"noise\.mp4: cannot be opened") as err:
        VideoFrames(tmp_path / "noise.mp4", backend=backend)
    assert "\n" not in str(err.value)
    data = write_video_file(tmp_path / "full.mp4", flat_colour_frames(30)).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: lost
    with pytest.raises(ValueError, match=r"cut\.mp4: (cannot be opened|no frame could be decoded)"):
        VideoFrames(tmp_path / "cut.mp4", backend=backend)
    with pytest.raises(ValueError, match="backend must be one of"):
        VideoFrames(tmp_path / "full.mp4", backend="opencv")


def test_long_walks_decode_in_blocks(clip, monkeypatch):
    """A forward walk reads BLOCK_FRAMES frames per decoder call, not one."""
    video = VideoFrames(clip["mp4"], backend=BACKENDS[-1])
    calls = []
    read = video._reader.read
    monkeypatch.setattr(video._reader, "read", lambda indices: calls.append(len(indices)) or read(indices))
    for t in range(40):
        video[t]
    assert len(calls) <= 1 + 40 // BLOCK_FRAMES + 1 and max(calls) == BLOCK_FRAMES
