"""Spatial merging speed: batched ``spatial_merge`` against a frame-by-frame loop.

VISA merges every frame's 256 CLIP tokens (width 1024) into 112; a sample holds 13 frames
(12 references + the target). Three ways are timed:

* ``reference_loop``: the straightforward formulation, one frame at a time, ``torch.cdist`` for the
  distances (as Chat-UniVi runs it once per ``<image>``), written out below;
* ``library_loop``: ``visa_lib.model.merge.spatial_merge_loop``, our code called frame by frame;
* ``batched``: ``visa_lib.model.merge.spatial_merge`` on all frames at once.

All three give the same tokens (checked before timing, with the 1e-6 tie-break noise switched
off: in 1024 dimensions many densities differ by less than 1e-6, so noise drawn in a different
order would pick different centres).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/merge_speed.py [--frames 13] [--repeats 20] [--clock cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import visa_lib.model.merge as merge_module
from visa_lib.model.merge import CLUSTER_KS, CLUSTER_NUMS, spatial_merge, spatial_merge_loop


def _reference_dpc_knn(x: torch.Tensor, cluster_num: int, k: int, noise: torch.Tensor):
    """DPC-KNN for one frame ``x [N, C]``, written straightforwardly (torch.cdist, scatter by loop)."""
    n, c = x.shape
    dist = torch.cdist(x[None], x[None])[0] / c**0.5
    knn = dist.topk(k, dim=-1, largest=False).values
    density = (-(knn**2).mean(-1)).exp() + noise * 1e-6
    denser = density[None, :] > density[:, None]
    delta = torch.where(denser, dist, dist.max()).min(-1).values
    centers = (delta * density).topk(cluster_num).indices
    assign = dist[centers].argmin(0)
    assign[centers] = torch.arange(cluster_num)
    merged = torch.stack([x[assign == i].sum(0) / ((assign == i).sum() + 1e-6) for i in range(cluster_num)])
    return merged


def reference_loop(x: torch.Tensor, noise_scale: float = 1.0) -> torch.Tensor:
    """Frame-by-frame 256 -> 64 -> 32 -> 16 with :func:`_reference_dpc_knn`; ``[B, 112, C]``."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for frame in x:
        levels, current = [], frame
        for num, k in zip(CLUSTER_NUMS, CLUSTER_KS, strict=True):
            current = _reference_dpc_knn(
                current, num, k, torch.rand(len(current), generator=gen) * noise_scale
            )
            levels.append(current)
        out.append(torch.cat(levels))
    return torch.stack(out)


def clustered_tokens(frames: int, tokens: int, channels: int, seed: int = 0) -> torch.Tensor:
    """Features with structure, like real patch tokens: 24 prototypes per frame plus small noise."""
    gen = torch.Generator().manual_seed(seed)
    protos = torch.randn(frames, 24, channels, generator=gen)
    which = torch.randint(0, 24, (frames, tokens), generator=gen)
    return torch.gather(protos, 1, which[..., None].expand(-1, -1, channels)) + 0.3 * torch.randn(
        frames, tokens, channels, generator=gen
    )


def _time(fn, x: torch.Tensor, repeats: int, device: str, clock: str) -> float:
    """Median time (seconds) of ``fn(x)`` over ``repeats`` runs after one warm-up.

    ``clock="cpu"`` uses the process CPU time (robust on a shared machine, meaningful with one
    thread on the CPU); ``"wall"`` the wall clock (use it on a GPU or with several threads).
    """
    now = time.process_time if clock == "cpu" else time.perf_counter
    fn(x)
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = now()
        fn(x)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(now() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=13)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--channels", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--clock", choices=("cpu", "wall"), default="cpu", help="process CPU time or wall clock"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = clustered_tokens(args.frames, args.tokens, args.channels)

    noise, merge_module.DENSITY_NOISE = merge_module.DENSITY_NOISE, 0.0
    batched = spatial_merge(x.to(args.device)).cpu()
    assert batched.shape == (args.frames, 112, args.channels)
    diffs = {
        "library_loop": (spatial_merge_loop(x) - batched).abs().max().item(),
        "reference_loop": (reference_loop(x, noise_scale=0.0) - batched).abs().max().item(),
    }
    merge_module.DENSITY_NOISE = noise

    t_ref = _time(reference_loop, x, max(3, args.repeats // 4), "cpu", args.clock)
    t_loop = _time(spatial_merge_loop, x.to(args.device), args.repeats, args.device, args.clock)
    t_batch = _time(spatial_merge, x.to(args.device), args.repeats, args.device, args.clock)
    result = {
        "device": args.device,
        "threads": args.threads,
        "clock": args.clock,
        "shape": [args.frames, args.tokens, args.channels],
        "reference_loop_frames_per_s (cpu)": round(args.frames / t_ref, 1),
        "library_loop_frames_per_s": round(args.frames / t_loop, 1),
        "batched_frames_per_s": round(args.frames / t_batch, 1),
        "speedup_vs_reference_loop": round(t_ref / t_batch, 2),
        "max_abs_diff_vs_batched": diffs,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
