"""Peak memory of ``visa infer`` against video length: it must not grow with the number of frames.

For each length the script writes an H.264 mp4 of a ReasonVOS-lite validation video (320x240, its 32
frames played forwards and backwards until the length is reached), then runs ``visa infer`` on it in a
fresh Python process (toy rung, CPU, the target frame given so the run is deterministic and XMem
tracks the object both ways) and reads that process's peak resident memory (``ru_maxrss``). The toy
models are the same at every length, so any growth comes from holding frames, masks or overlays.

Usage::

    python benchmarks/infer_memory.py [--frames 240 2400] [--scale 1] [--xmem-size N] [--overlay gif]

The last line printed is ``ratio <peak at the longest / peak at the shortest>``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: The video and query of the end-to-end tests: the toy VISA finds the circle at frame 13.
VIDEO, QUERY, TARGET = "skimage/valid_circle_0001", "which shape has no corners?", 13

_CHILD = """
import resource, sys
from visa_lib.cli import main
code = main(sys.argv[1:])
print("PEAK_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def write_clip(path: Path, num_frames: int, scale: int = 1) -> Path:
    """An mp4 of ``num_frames`` frames cycling the validation video forwards and backwards (streamed),
    each frame enlarged ``scale`` times (nearest neighbour)."""
    from visa_lib.data.revos import load_revos
    from visa_lib.data.video import write_video_file
    from visa_lib.paths import REASONVOS_LITE

    split = load_revos(REASONVOS_LITE, "valid")
    length = len(split.videos[VIDEO].frames)
    cycle = list(range(length)) + list(range(length - 2, 0, -1))
    frames = (
        np.kron(split.read_frame(VIDEO, cycle[t % len(cycle)]), np.ones((scale, scale, 1), np.uint8))
        for t in range(num_frames)
    )
    return write_video_file(path, frames)


def peak_rss(video: Path, out: Path, overlay: str = "gif", xmem_size: int | None = None) -> tuple[int, float]:
    """Run ``visa infer`` on ``video`` in a fresh process; return (peak RSS in bytes, seconds)."""
    argv = ["infer", "--video", str(video), "--text", QUERY, "--target-frame", str(TARGET)]
    argv += ["--out", str(out), "--overlay", overlay, "--overwrite"]
    if xmem_size is not None:
        argv += ["--xmem-size", str(xmem_size)]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"visa infer failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("PEAK_KIB"))
    return int(line.split()[1]) * 1024, seconds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[240, 2400], help="video lengths")
    parser.add_argument("--overlay", default="gif", choices=("gif", "mp4", "none"))
    parser.add_argument("--scale", type=int, default=1, help="enlarge the 320x240 frames this many times")
    parser.add_argument("--xmem-size", type=int, help="visa infer --xmem-size (default: the toy's 120)")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for num_frames in args.frames:
            video = write_clip(Path(tmp) / f"clip_{num_frames}.mp4", num_frames, args.scale)
            out = Path(tmp) / f"out_{num_frames}"
            peak, seconds = peak_rss(video, out, args.overlay, args.xmem_size)
            masks = len(list(out.glob("00_*/masks/*.png")))
            assert masks == num_frames, f"{masks} masks written for {num_frames} frames"
            (query,) = json.loads((out / "summary.json").read_text())["queries"]
            assert len(query["frames_with_object"]) > 1, "the toy VISA found nothing: XMem did not run"
            peak_mib, seconds = round(peak / 2**20, 1), round(seconds, 1)
            rows.append({"frames": num_frames, "peak_mib": peak_mib, "seconds": seconds})
            print(f"{num_frames:6d} frames: peak RSS {peak / 2**20:8.1f} MiB, {seconds:6.1f} s", flush=True)
    ratio = rows[-1]["peak_mib"] / rows[0]["peak_mib"]
    size = f"{320 * args.scale}x{240 * args.scale}"
    result = {"rows": rows, "ratio": round(ratio, 3), "overlay": args.overlay, "frame_size": size}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(f"ratio {ratio:.3f}")
    return result


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
