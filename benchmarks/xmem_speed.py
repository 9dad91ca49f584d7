"""XMem propagation speed on CPU: frames per second of ``propagate`` (all work per frame: normalise, resize,
key/value encoding, memory read, decoding, upsampling, argmax), for the official-size network at 480p and
for the toy network at its working resolution.

The official run uses random weights with the official layout (XMem.pth cannot be downloaded here; speed
does not depend on the weight values). Usage::

    OMP_NUM_THREADS=1 python benchmarks/xmem_speed.py --threads 1
    python benchmarks/xmem_speed.py --official-frames 6 --toy-frames 40 --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from visa_lib.paths import TOY_WEIGHTS
from visa_lib.xmem import MemoryConfig, XMem, XMemConfig, XMemTracker
from visa_lib.xmem.inference import TOY_XMEM_FILE
from visa_lib.xmem.propagate import propagate


def _video(t: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured video with a moving square: uint8 [t, h, w, 3] and its first-frame mask."""
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    frames = np.repeat(bg[None], t, axis=0)
    side = h // 4
    for i in range(t):
        frames[i, h // 3 : h // 3 + side, 10 + 4 * i : 10 + 4 * i + side] = (255, 0, 0)
    mask = np.zeros((h, w), bool)
    mask[h // 3 : h // 3 + side, 10 : 10 + side] = True
    return frames, mask


def time_propagation(
    tracker: XMemTracker, frames: np.ndarray, mask: np.ndarray, repeats: int = 1
) -> dict[str, float]:
    """Best frames/s over ``repeats`` forward passes from frame 0, by process CPU time and by wall time.

    On a shared machine the CPU-time figure is the stable one (with one thread it is the single-core
    throughput); on a dedicated machine the two agree.
    """
    best_cpu = best_wall = 0.0
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        propagate(frames, mask, 0, tracker, direction="forward", progress=False)
        best_cpu = max(best_cpu, len(frames) / (time.process_time() - c0))
        best_wall = max(best_wall, len(frames) / (time.perf_counter() - t0))
    return {"fps_cpu_time": round(best_cpu, 3), "fps_wall": round(best_wall, 3)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--official-frames", type=int, default=6)
    ap.add_argument("--toy-frames", type=int, default=40)
    ap.add_argument("--height", type=int, default=480, help="input video height (DAVIS 480p: 480x854)")
    ap.add_argument("--width", type=int, default=854)
    ap.add_argument("--skip-official", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results: dict[str, object] = {"threads": args.threads, "cpu": platform.processor() or platform.machine()}

    toy = XMemTracker.toy(TOY_WEIGHTS / TOY_XMEM_FILE)
    frames, mask = _video(args.toy_frames, 240, 320)
    results[f"toy_240x320_size{toy.memory.size}"] = time_propagation(toy, frames, mask, repeats=2)
    frames, mask = _video(args.toy_frames, args.height, args.width)
    results[f"toy_{args.height}x{args.width}_size480"] = time_propagation(
        XMemTracker(toy.network, MemoryConfig.official()), frames, mask
    )
    if not args.skip_official:
        official = XMemTracker(XMem(XMemConfig.official()), MemoryConfig.official())
        frames, mask = _video(args.official_frames, args.height, args.width)
        results[f"official_{args.height}x{args.width}_size480"] = time_propagation(official, frames, mask)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
