"""Resident memory of ``VideoFrames`` walking a video the way ``visa infer`` does, per backend.

Opens the mp4 of ``benchmarks/infer_memory.py`` (320x240), reads VISA's 11 reference frames and the
target frame 13, walks back to frame 0 (XMem's backward run, pausing ``--pause`` seconds per frame as
XMem's work would) and then forwards to the end, printing the process's resident memory (MiB) after
each step. Used to find which reader grows with video length.

Usage::

    python benchmarks/reader_memory.py [--frames 240 1200] [--reader decord pyav] [--pause 0.05]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = """
import sys, time
from visa_lib.data.sampling import eval_reference_frames
from visa_lib.data.video import VideoFrames
def rss():
    return next(int(x.split()[1]) // 1024 for x in open("/proc/self/status") if x.startswith("VmRSS"))
video = VideoFrames(sys.argv[1], backend=sys.argv[2])
n, steps = len(video), {"opened": rss()}
video[eval_reference_frames(n, 13)], video[13]
steps["references"] = rss()
for t in range(13, -1, -1):
    video[t]
    time.sleep(float(sys.argv[3]))  # XMem's work on the frame: the reader's own threads keep running
steps["backward to 0"] = rss()
for t in range(14, n):
    video[t]
steps["forward to the end"] = rss()
print(" ".join(f"{k}: {v} MiB," for k, v in steps.items()))
"""


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from infer_memory import write_clip

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[240, 1200])
    parser.add_argument("--reader", nargs="+", default=["decord", "pyav"], choices=("decord", "pyav"))
    parser.add_argument("--pause", type=float, default=0.05, help="seconds per frame of the backward walk")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for num_frames in args.frames:
            video = write_clip(Path(tmp) / f"clip_{num_frames}.mp4", num_frames)
            for reader in args.reader:
                child = [sys.executable, "-c", _CHILD, str(video), reader, str(args.pause)]
                proc = subprocess.run(child, capture_output=True, text=True, check=True)
                print(f"{num_frames:6d} frames, {reader:6s}: {proc.stdout.strip()}", flush=True)


if __name__ == "__main__":
    main()
