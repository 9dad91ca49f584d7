"""Read a user's video lazily: a folder of frames or a video file, decoded a few frames at a time.

``visa infer``, ``visa predict``, :func:`visa_lib.pipeline.run_on_video` and the notebooks read videos
through :class:`VideoFrames`. It behaves like a read-only list of ``uint8 [H,W,3]`` RGB frames: ``len()``,
indexing, slicing and lists of indices decode only the frames asked for, so a long video is never held
in memory at full resolution (VISA itself only needs the sampler's subsample, about a dozen reference
frames and XMem's one-frame-at-a-time pass).

Video files are decoded with **decord** (batched random access) when it is installed, and with **PyAV**
otherwise (decord has no wheel for some platforms, e.g. macOS arm64; PyAV is a hard dependency). Both
give the same frames. When the file is opened it is decoded once, without keeping frames, to count the
frames that really decode: a container header can promise more frames than a damaged file holds, and a
warning then names both numbers (the video is the frames before the first one that fails). A damaged
file is always read with PyAV: decord's results on one depend on the order its frames are read in.
docs/robustness.md lists every check.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

#: File suffixes read as frames of a folder (sorted by name, as ReVOS/DAVIS frame folders are).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Suffixes read as video files.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif")
BACKENDS = ("decord", "pyav")
#: Frames decoded together when a video is walked forwards or backwards (one block is cached) ...
BLOCK_FRAMES = 16
#: ... unless that would exceed this many bytes (a block of 4K frames is smaller).
BLOCK_BYTES = 64 * 2**20


def default_backend() -> str:
    """``"decord"`` when it is importable, else ``"pyav"``."""
    return "decord" if importlib.util.find_spec("decord") is not None else "pyav"


class _DecordReader:
    """decord's ``VideoReader``: the container's frame index, batched random access."""

    def __init__(self, path: Path) -> None:
        import decord

        self.path = path
        self._error = (RuntimeError, decord.DECORDError)
        self._reader = self._open()
        self.reported: int | None = len(self._reader)
        # On a damaged file decord's results depend on the order frames are read in; VideoFrames then
        # switches to PyAV, whose sequential decode gives a stable count.
        self.damaged = not self._decodes_fully()
        self.length = 0 if self.damaged else len(self._reader)

    def _open(self):
        import decord

        try:
            return decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=1)
        except self._error as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(
                f"video {self.path}: cannot be opened (corrupt file or unsupported codec: {first})"
            ) from None

    def _decodes_fully(self) -> bool:
        """Decode every frame once, a block at a time (nothing is kept)."""
        total = self.reported or 0
        for start in range(0, total, BLOCK_FRAMES):
            try:
                self._reader.get_batch(list(range(start, min(start + BLOCK_FRAMES, total))))
            except self._error:
                return False
        self._reader.seek(0)
        return True

    def read(self, indices: list[int]) -> np.ndarray:
        return self._reader.get_batch(indices).asnumpy()


class _PyAVReader:
    """PyAV: one decoding pass notes timestamps and key frames; reads seek to key frames."""

    def __init__(self, path: Path) -> None:
        import av

        self.path = path
        self._error = (av.FFmpegError, OSError)
        self._container = self._open()
        stream = self._container.streams.video[0]
        self.reported = int(stream.frames) or None  # 0 = the container does not say (e.g. mkv)
        self._pts: list[int | None] = []
        self._keys: list[int] = []
        try:
            for frame in self._container.decode(stream):
                if frame.key_frame:
                    self._keys.append(len(self._pts))
                self._pts.append(frame.pts)
        except self._error:
            pass  # the frames decoded so far are the video; VideoFrames warns
        self.length = len(self._pts)
        self._by_pts = {p: i for i, p in enumerate(self._pts)}
        self._seekable = None not in self._by_pts and len(self._by_pts) == self.length
        self._frames = None  # live iterator of (index, av.VideoFrame)
        self._next = 0

    def _open(self):
        import av

        try:
            container = av.open(str(self.path))
        except self._error as err:
            raise ValueError(
                f"video {self.path}: cannot be opened (corrupt file or unsupported codec: {err})"
            ) from None
        if not container.streams.video:
            raise ValueError(f"video {self.path}: the file holds no video stream")
        container.streams.video[0].thread_type = "AUTO"
        return container

    def _iterate_from(self, index: int):
        """Decode from the last key frame at or before ``index``, yielding ``(frame index, frame)``."""
        key = max((k for k in self._keys if k <= index), default=0)
        if key == 0 or not self._seekable:
            self._container.close()
            self._container = self._open()
            stream = self._container.streams.video[0]
            yield from enumerate(self._container.decode(stream))
            return
        stream = self._container.streams.video[0]
        self._container.seek(self._pts[key], stream=stream, backward=True, any_frame=False)
        for frame in self._container.decode(stream):
            position = self._by_pts.get(frame.pts)
            if position is not None:
                yield position, frame

    def _frame(self, index: int) -> np.ndarray:
        # Go on decoding when the frame is a little ahead of the live iterator; seek otherwise.
        if self._frames is None or not self._next <= index < self._next + 4 * BLOCK_FRAMES:
            self._frames = self._iterate_from(index)
        for position, frame in self._frames:
            self._next = position + 1
            if position == index:
                return frame.to_ndarray(format="rgb24")
            if position > index:
                break
        self._frames = None
        raise ValueError(f"video {self.path}: frame {index} could not be decoded")

    def read(self, indices: list[int]) -> np.ndarray:
        decoded = {index: self._frame(index) for index in sorted(set(indices))}
        return np.stack([decoded[i] for i in indices])


class VideoFrames(Sequence):
    """The frames of a folder of images or of a video file, decoded on access.

    Arguments:
      path (str | Path): a folder of frames (``.jpg``/``.png``..., sorted by file name) or a video file.
      backend (str | None): for video files, ``"decord"`` or ``"pyav"`` (default: decord when installed).
    Indexing: ``frames[i]`` -> uint8 ``[H,W,3]``; ``frames[a:b]``, ``frames[[i, j]]`` -> ``[T,H,W,3]``.
    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: no frames in the folder, an unknown suffix, or a file that cannot be decoded.
    Warns:
      UserWarning: the container reports more frames than decode (both numbers are given).
    """

    def __init__(self, path: str | Path, backend: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"video {self.path}: no such file or folder")
        self._files: list[Path] | None = None
        self._reader: _DecordReader | _PyAVReader | None = None
        self._block: tuple[int, np.ndarray] | None = None  # (first index, frames) of the cached block
        self._last = -2  # last index read, to tell a forward or backward walk from random access
        self.backend = "folder"
        if self.path.is_dir():
            self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise ValueError(
                    f"video folder {self.path}: no frames ({', '.join(IMAGE_SUFFIXES)}); "
                    "give a folder of images or a video file"
                )
            self._length = len(self._files)
        elif self.path.suffix.lower() in VIDEO_SUFFIXES:
            self.backend = backend or default_backend()
            if self.backend not in BACKENDS:
                raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
            self._reader = _DecordReader(self.path) if self.backend == "decord" else _PyAVReader(self.path)
            if isinstance(self._reader, _DecordReader) and self._reader.damaged:
                self.backend, self._reader = "pyav", _PyAVReader(self.path)
            self._length = self._reader.length
            self._check_count(self._reader.reported)
        else:
            raise ValueError(
                f"video {self.path}: unknown suffix {self.path.suffix!r}; give a folder of frames or one of "
                f"{', '.join(VIDEO_SUFFIXES)}"
            )
        first = self[0]
        self.height, self.width = first.shape[:2]

    def _check_count(self, reported: int | None) -> None:
        if self._length == 0:
            raise ValueError(f"video {self.path}: no frame could be decoded (corrupt or empty file)")
        if reported is not None and self._length < reported:
            warnings.warn(
                f"video {self.path}: the container reports {reported} frames but only {self._length} "
                f"decode; using the first {self._length} (the file is damaged after frame "
                f"{self._length - 1})",
                stacklevel=3,
            )

    # ------------------------------------------------------------------ video files
    def _read_video_frame(self, index: int) -> np.ndarray:
        if self._block is not None and 0 <= index - self._block[0] < len(self._block[1]):
            return self._block[1][index - self._block[0]].copy()  # callers may write into their frame
        frame_bytes = 3 * getattr(self, "height", 1) * getattr(self, "width", 1)
        size = max(1, min(BLOCK_FRAMES, BLOCK_BYTES // frame_bytes))
        if index == self._last + 1:  # walking forwards: decode the next block at once
            indices = list(range(index, min(index + size, len(self))))
        elif index == self._last - 1:  # walking backwards (XMem's backward pass)
            indices = list(range(max(index - size + 1, 0), index + 1))
        else:
            indices = [index]
        self._block = (indices[0], self._reader.read(indices))
        return self._block[1][index - indices[0]].copy()

    # ------------------------------------------------------------------ Sequence
    def __len__(self) -> int:
        return self._length

    def _index(self, index) -> int:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame {index} is outside the {len(self)} frames of {self.path}")
        return index % len(self)

    def __getitem__(self, index):  # int -> [H,W,3]; slice or list of ints -> [T,H,W,3]
        if isinstance(index, slice):
            index = range(*index.indices(len(self)))
        if isinstance(index, (range, list, tuple, np.ndarray)):
            indices = [self._index(i) for i in index]
            if self._reader is not None and len(indices) > 1:
                return self._checked(self._reader.read(indices), indices[0])
            if not indices:
                return np.zeros((0, *self[0].shape), np.uint8)
            return np.stack([self[i] for i in indices])
        index = self._index(index)
        if self._files is None:
            frame = self._read_video_frame(index)
        else:
            frame = _read_image(self._files[index])
        self._last = index
        return self._checked(frame, index)

    def _checked(self, frames: np.ndarray, index: int) -> np.ndarray:
        if hasattr(self, "height") and frames.shape[-3:-1] != (self.height, self.width):
            raise ValueError(
                f"video {self.path}: frame {index} is {frames.shape[-2]}x{frames.shape[-3]} but the first "
                f"frame is {self.width}x{self.height}; every frame must have one size"
            )
        return frames

    def __repr__(self) -> str:
        size = f"{self.width}x{self.height}" if hasattr(self, "width") else "?"
        return f"VideoFrames({str(self.path)!r}, frames={len(self)}, size={size}, backend={self.backend!r})"


class SplitVideoFrames(Sequence):
    """The frames of one video of a loaded dataset split (a ``RevosSplit``), read on access.

    Arguments:
      split: anything with ``videos[video].frames`` and ``read_frame(video, index)``.
      video (str): the video's name in the split.
    """

    def __init__(self, split, video: str) -> None:
        self.split, self.video = split, video
        self.length = len(split.videos[video].frames)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> np.ndarray:
        if not -self.length <= index < self.length:
            raise IndexError(f"frame {index} is outside the {self.length} frames of {self.video}")
        return self.split.read_frame(self.video, index % self.length)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))  # writable (torch warns on read-only arrays)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"frame {path}: not a readable image ({err})") from None


def write_video_file(path: str | Path, frames: Iterable[np.ndarray], fps: float = 10, gop: int = 12) -> Path:
    """Encode ``uint8 [H,W,3]`` RGB frames (any iterable, streamed) as H.264 ``.mp4``/``.mkv`` with PyAV.

    ``gop`` is the key-frame interval. Sizes must be even (H.264 with 4:2:0 colour).
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = None
        for frame in frames:
            frame = np.ascontiguousarray(frame)
            if stream is None:
                stream = container.add_stream("libx264", rate=fps)
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = {"g": str(gop)}
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        if stream is None:
            raise ValueError(f"write_video_file: no frames given for {path}")
        container.mux(stream.encode())
    return path


def write_video_frames(folder: str | Path, frames: np.ndarray) -> Path:
    """Write ``uint8 [T,H,W,3]`` frames as ``00000.jpg``, ``00001.jpg``, ... (a ReVOS-style frame folder)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=95)
    return folder
