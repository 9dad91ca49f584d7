"""Read a user's video lazily: a folder of frames or a video file, one frame at a time.

``visa infer`` and :func:`visa_lib.pipeline.run_on_video` accept either. A :class:`VideoFrames`
behaves like a read-only list of ``uint8 [H,W,3]`` RGB frames: ``len()`` and indexing decode only
the frames asked for, so a long video is never held in memory at full resolution (VISA itself only
needs the sampler's subsample, about a dozen reference frames and XMem's one-frame-at-a-time pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: File suffixes read as frames of a folder (sorted by name, as ReVOS/DAVIS frame folders are).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Suffixes read as video files (decoded with OpenCV).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif")


class VideoFrames(Sequence):
    """The frames of a folder of images or of a video file, decoded on access.

    Arguments:
      path (str | Path): a folder of frames (``.jpg``/``.png``..., sorted by file name) or a video file.
    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: no frames in the folder, an unknown suffix, or a file OpenCV cannot decode.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"video {self.path}: no such file or folder")
        self._files: list[Path] | None = None
        self._capture = None
        self._next = 0  # index the open capture decodes next (sequential reads need no seek)
        if self.path.is_dir():
            self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise ValueError(
                    f"video folder {self.path}: no frames ({', '.join(IMAGE_SUFFIXES)}); "
                    "give a folder of images or a video file"
                )
            self._length = len(self._files)
        elif self.path.suffix.lower() in VIDEO_SUFFIXES:
            self._length = self._count_frames()
        else:
            raise ValueError(
                f"video {self.path}: unknown suffix {self.path.suffix!r}; give a folder of frames or one of "
                f"{', '.join(VIDEO_SUFFIXES)}"
            )
        first = self[0]
        self.height, self.width = first.shape[:2]

    # ------------------------------------------------------------------ video files
    def _open(self):
        import cv2

        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise ValueError(f"video {self.path}: OpenCV cannot open it (corrupt file or unsupported codec)")
        return capture

    def _count_frames(self) -> int:
        # The container's frame count can be wrong; decoding once is slow but exact.
        capture = self._open()
        count = 0
        while capture.grab():
            count += 1
        capture.release()
        if count == 0:
            raise ValueError(f"video {self.path}: no frame could be decoded (corrupt or empty file)")
        return count

    def _read_video_frame(self, index: int) -> np.ndarray:
        import cv2

        if self._capture is None or index != self._next:
            if self._capture is None:
                self._capture = self._open()
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = self._capture.read()
        if not ok:
            raise ValueError(f"video {self.path}: frame {index} could not be decoded")
        self._next = index + 1
        return np.ascontiguousarray(bgr[:, :, ::-1])

    # ------------------------------------------------------------------ Sequence
    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):  # int -> [H,W,3]; slice -> [T,H,W,3]
        if isinstance(index, slice):
            return np.stack([self[i] for i in range(*index.indices(len(self)))])
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame {index} is outside the {len(self)} frames of {self.path}")
        index %= len(self)
        if self._files is None:
            frame = self._read_video_frame(index)
        else:
            frame = _read_image(self._files[index])
        if hasattr(self, "height") and frame.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"video {self.path}: frame {index} is {frame.shape[1]}x{frame.shape[0]} but the first "
                f"frame is {self.width}x{self.height}; every frame must have one size"
            )
        return frame

    def __repr__(self) -> str:
        size = f"{self.width}x{self.height}" if hasattr(self, "width") else "?"
        return f"VideoFrames({str(self.path)!r}, frames={len(self)}, size={size})"


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


def write_video_frames(folder: str | Path, frames: np.ndarray) -> Path:
    """Write ``uint8 [T,H,W,3]`` frames as ``00000.jpg``, ``00001.jpg``, ... (a ReVOS-style frame folder)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=95)
    return folder
