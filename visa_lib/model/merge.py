"""Spatial token merging by DPC-KNN clustering, as Chat-UniVi (and therefore VISA) does it.

Each video frame reaches the LLM as 256 CLIP patch tokens. Chat-UniVi clusters them three
times in a row -- 256 -> 64, then those 64 -> 32, then those 32 -> 16 -- and concatenates the
three levels, so a frame costs 64 + 32 + 16 = 112 tokens instead of 256.

The clustering is density-peak clustering with a k-nearest-neighbour density (DPC-KNN):

1. ``D = cdist(x, x) / sqrt(C)`` (pairwise Euclidean distances, scaled by the channel count).
2. Local density ``rho_i = exp(-mean_{j in kNN(i)} D_ij^2)``; the k nearest neighbours include the
   token itself (distance 0). A tiny uniform noise (``U(0,1) * 1e-6``) breaks ties.
3. Distance indicator ``delta_i = min_{j: rho_j > rho_i} D_ij``; the densest token gets ``max(D)``.
4. Score ``s_i = rho_i * delta_i``; the ``cluster_num`` tokens with the highest scores are the
   centres, in descending score order.
5. Every token joins its nearest centre; a centre always joins itself.
6. Each cluster is replaced by the plain mean of its tokens: ``sum_i x_i / (n_c + 1e-6)``.

The merged tokens come out in centre (score) order, not in spatial order, and no positional
embedding is added afterwards -- exactly as in Chat-UniVi. The clustering has no parameters.

Precision follows Chat-UniVi too: distances and densities are computed in float32 from the tokens,
the cluster means in the tokens' own dtype (bf16 in a bf16 model), and each level clusters the
previous level's output in that dtype (``docs/checkpoints.md``, "Precision").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

#: Chat-UniVi's spatial cluster counts (``spatial_cluster_rate0..2``) and their k (``CTM(.., k)``).
CLUSTER_NUMS: tuple[int, ...] = (64, 32, 16)
CLUSTER_KS: tuple[int, ...] = (5, 3, 3)
#: Tie-break noise amplitude on the densities, and the denominator guard of the mean merge.
DENSITY_NOISE = 1e-6
MERGE_EPS = 1e-6


@dataclass
class DPCKNNResult:
    """Everything one DPC-KNN call computes (all tensors on the input's device).

    Attributes:
        merged: float ``[B, cluster_num, C]``, mean token of each cluster, in centre order.
        assign: long ``[B, N]``, cluster index in ``[0, cluster_num)`` of every input token.
        density: float ``[B, N]``, local density ``rho`` (with the tie-break noise added).
        delta: float ``[B, N]``, distance to the nearest denser token.
        score: float ``[B, N]``, ``rho * delta``.
        centers: long ``[B, cluster_num]``, token index of each centre, by descending score.
    """

    merged: torch.Tensor
    assign: torch.Tensor
    density: torch.Tensor
    delta: torch.Tensor
    score: torch.Tensor
    centers: torch.Tensor


def effective_k(cluster_num: int, k: int) -> int:
    """The neighbour count Chat-UniVi's ``CTM`` really uses.

    When the requested ``k`` exceeds the number of clusters, ``CTM`` falls back to
    ``min(3, max(cluster_num // 2, 1))``. With the default (64, 32, 16) / (5, 3, 3) it never
    triggers; it matters for the smaller token budgets of the 56-token comparison.

    Args:
        cluster_num (int): number of clusters of this level.
        k (int): requested neighbour count.
    """
    if k > cluster_num:
        return min(3, max(cluster_num // 2, 1))
    return k


def _check_tokens(x: torch.Tensor, cluster_num: int, k: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"dpc_knn: x must be a tensor [B, N, C], got {shape}")
    n = x.shape[1]
    if not 1 <= cluster_num <= n:
        raise ValueError(f"dpc_knn: cluster_num={cluster_num} must lie in [1, N={n}] (N = tokens per frame)")
    if not 1 <= k <= n:
        raise ValueError(f"dpc_knn: k={k} must lie in [1, N={n}] (the neighbours include the token)")


def pairwise_distance(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``[B, N, N]`` between the tokens of ``x [B, N, C]`` (computed in float32).

    Uses ``|a|^2 + |b|^2 - 2 a.b`` with one batched matrix product -- the formula ``torch.cdist``
    itself switches to for more than 25 tokens -- which is about 2x faster than calling
    ``torch.cdist`` on CPU. Round-off can make a squared distance slightly negative, so it is
    clamped at 0, and the diagonal is set to exactly 0.
    """
    xf = x.float()
    sq = (xf * xf).sum(-1)
    d2 = torch.baddbmm(sq[:, :, None] + sq[:, None, :], xf, xf.transpose(1, 2), alpha=-2.0)
    d2.diagonal(dim1=1, dim2=2).zero_()
    return d2.clamp_min_(0.0).sqrt_()


def dpc_knn_details(
    x: torch.Tensor, cluster_num: int, k: int, generator: torch.Generator | None = None
) -> DPCKNNResult:
    """DPC-KNN clustering of ``x`` with every intermediate quantity returned (see module doc).

    Args:
        x (torch.Tensor): tokens ``[B, N, C]``, any float dtype, CPU or GPU.
        cluster_num (int): number of clusters, ``1 <= cluster_num <= N``.
        k (int): neighbours used for the density, counting the token itself.
        generator (torch.Generator | None): source of the tie-break noise; pass a seeded
            generator (on any device) for reproducible results. ``None`` uses the global RNG.

    Returns:
        DPCKNNResult: merged ``[B, cluster_num, C]`` (dtype of ``x``), assignment ``[B, N]`` and
        the density / delta / score / centres behind them.
    """
    _check_tokens(x, cluster_num, k)
    b, n, c = x.shape
    with torch.no_grad():
        dist = pairwise_distance(x) / math.sqrt(c)  # [B, N, N]

        # Local density from the k nearest neighbours (self included, distance 0).
        knn_dist, _ = torch.topk(dist, k=k, dim=-1, largest=False)
        density = (-(knn_dist**2).mean(dim=-1)).exp()  # [B, N]
        gen_device = generator.device if generator is not None else x.device
        noise = torch.rand(density.shape, generator=generator, device=gen_device)
        density = density + noise.to(density.device) * DENSITY_NOISE

        # delta_i: distance to the nearest token that is denser than i; max(D) for the densest.
        denser = density[:, None, :] > density[:, :, None]  # [B, i, j]: rho_j > rho_i
        dist_max = dist.flatten(1).max(dim=-1).values[:, None, None]
        delta = torch.where(denser, dist, dist_max).min(dim=-1).values  # [B, N]

        score = delta * density
        centers = torch.topk(score, k=cluster_num, dim=-1).indices  # [B, cluster_num], by score

        # Nearest centre for every token; centres are forced onto their own cluster.
        center_dist = torch.gather(dist, 1, centers[:, :, None].expand(b, cluster_num, n))
        assign = center_dist.argmin(dim=1)  # [B, N]
        own = torch.arange(cluster_num, device=x.device).expand(b, cluster_num)
        assign.scatter_(1, centers, own)

        merged = _mean_merge(x, assign, cluster_num)
    return DPCKNNResult(merged, assign, density, delta, score, centers)


def _mean_merge(x: torch.Tensor, assign: torch.Tensor, cluster_num: int) -> torch.Tensor:
    """Mean of the tokens of each cluster, ``sum_i x_i / (n_c + 1e-6)`` -> ``[B, cluster_num, C]``.

    Computed in the dtype of ``x``, step by step as Chat-UniVi's ``merge_tokens`` does: counts,
    ``w_i = 1 / (n_c + 1e-6)``, ``x_i * w_i`` and the sums are each rounded to that dtype (in a bf16
    model the merged tokens are bf16 sums of bf16 products, not float32 means rounded once).
    """
    b, n, c = x.shape
    flat = (assign + torch.arange(b, device=x.device)[:, None] * cluster_num).reshape(-1)
    counts = x.new_zeros(b * cluster_num, 1)
    counts.index_add_(0, flat, x.new_ones(b * n, 1))
    weight = x.new_ones(b * n, 1) / (counts + MERGE_EPS)[flat]  # per-token weight 1 / (n_c + eps)
    sums = x.new_zeros(b * cluster_num, c)
    sums.index_add_(0, flat, x.reshape(b * n, c) * weight)
    return sums.reshape(b, cluster_num, c)


def dpc_knn(
    x: torch.Tensor, cluster_num: int, k: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster tokens with DPC-KNN and merge each cluster into its mean token.

    Args:
        x (torch.Tensor): tokens ``[B, N, C]``.
        cluster_num (int): number of output tokens per batch element.
        k (int): neighbours for the local density (the token itself counts).
        generator (torch.Generator | None): seeded generator for the tie-break noise.

    Returns:
        tuple: ``merged`` float ``[B, cluster_num, C]`` (centre order = descending score) and
        ``assign`` long ``[B, N]`` (cluster index of every input token).
    """
    result = dpc_knn_details(x, cluster_num, k, generator=generator)
    return result.merged, result.assign


@dataclass
class SpatialMergeResult:
    """Output of :func:`spatial_merge_details`.

    Attributes:
        tokens: ``[B, sum(cluster_nums), C]``, the concatenated levels (112 tokens by default).
        levels: per level, the merged tokens ``[B, cluster_nums[l], C]``.
        patch_assign: per level, long ``[B, N]``: the cluster of that level each ORIGINAL input
            token ends up in (level assignments composed), ready to be drawn over the frame.
    """

    tokens: torch.Tensor
    levels: list[torch.Tensor]
    patch_assign: list[torch.Tensor]


def spatial_merge_details(
    x: torch.Tensor,
    cluster_nums: Sequence[int] = CLUSTER_NUMS,
    ks: Sequence[int] = CLUSTER_KS,
    generator: torch.Generator | None = None,
) -> SpatialMergeResult:
    """Chat-UniVi's cascade: each level clusters the previous level's merged tokens.

    Args:
        x (torch.Tensor): patch tokens ``[B, N, C]`` (B frames, N = 256 for CLIP ViT-L/14).
        cluster_nums (Sequence[int]): clusters per level, decreasing (default 64, 32, 16).
        ks (Sequence[int]): requested k per level (default 5, 3, 3); :func:`effective_k` applies.
        generator (torch.Generator | None): seeded generator for the tie-break noise.

    Returns:
        SpatialMergeResult: tokens ``[B, sum(cluster_nums), C]``, the levels and, per level, the
        assignment of the original tokens.
    """
    if len(cluster_nums) != len(ks) or len(cluster_nums) == 0:
        raise ValueError(
            f"spatial_merge: cluster_nums {tuple(cluster_nums)} and ks {tuple(ks)} "
            "need the same non-zero length"
        )
    levels: list[torch.Tensor] = []
    patch_assign: list[torch.Tensor] = []
    current = x
    to_patch: torch.Tensor | None = None  # [B, N]: index into `current` of every original token
    for cluster_num, k in zip(cluster_nums, ks, strict=True):
        merged, assign = dpc_knn(current, cluster_num, effective_k(cluster_num, k), generator=generator)
        to_patch = assign if to_patch is None else torch.gather(assign, 1, to_patch)
        levels.append(merged)
        patch_assign.append(to_patch)
        current = merged
    return SpatialMergeResult(torch.cat(levels, dim=1), levels, patch_assign)


def spatial_merge(
    x: torch.Tensor,
    cluster_nums: Sequence[int] = CLUSTER_NUMS,
    ks: Sequence[int] = CLUSTER_KS,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Merge each frame's patch tokens into 64 + 32 + 16 = 112 tokens (batched over frames).

    Args:
        x (torch.Tensor): patch tokens ``[B, 256, C]`` (any N works), CPU or GPU.
        cluster_nums (Sequence[int]): clusters per level; e.g. ``(32, 16, 8)`` gives 56 tokens.
        ks (Sequence[int]): k per level.
        generator (torch.Generator | None): seeded generator for the tie-break noise.

    Returns:
        torch.Tensor: ``[B, sum(cluster_nums), C]`` in the dtype of ``x``.
    """
    return spatial_merge_details(x, cluster_nums, ks, generator=generator).tokens


def spatial_merge_loop(
    x: torch.Tensor,
    cluster_nums: Sequence[int] = CLUSTER_NUMS,
    ks: Sequence[int] = CLUSTER_KS,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Frame-by-frame reference of :func:`spatial_merge` (what Chat-UniVi does per ``<image>``).

    Kept for the speed benchmark and as a test oracle; same arguments and result as
    :func:`spatial_merge` (up to the noise draws, which differ in order).
    """
    return torch.cat([spatial_merge(x[i : i + 1], cluster_nums, ks, generator) for i in range(x.shape[0])])
