"""Tests of visa_lib.model.merge: DPC-KNN against a literal step-by-step implementation, and the cascade."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from visa_lib.model.merge import (
    dpc_knn,
    dpc_knn_details,
    effective_k,
    spatial_merge,
    spatial_merge_details,
    spatial_merge_loop,
)


def _literal_dpc_knn(x: np.ndarray, noise: np.ndarray, cluster_num: int, k: int):
    """The six steps written out with plain loops for one batch element (x [N, C], noise [N])."""
    n, c = x.shape
    dist = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            dist[i, j] = math.sqrt(((x[i] - x[j]) ** 2).sum()) / math.sqrt(c)
    density = np.array([math.exp(-np.mean(np.sort(dist[i])[:k] ** 2)) for i in range(n)]) + noise * 1e-6
    delta = np.empty(n)
    for i in range(n):
        denser = [dist[i, j] for j in range(n) if density[j] > density[i]]
        delta[i] = min(denser) if denser else dist.max()
    score = delta * density
    centers = list(np.argsort(-score, kind="stable")[:cluster_num])
    assign = np.array([int(np.argmin([dist[ctr, i] for ctr in centers])) for i in range(n)])
    for ci, ctr in enumerate(centers):
        assign[ctr] = ci
    merged = np.stack([x[assign == ci].sum(0) / ((assign == ci).sum() + 1e-6) for ci in range(cluster_num)])
    return merged, assign, density, delta, centers


def test_dpc_knn_matches_literal_steps():
    torch.manual_seed(0)
    x = torch.randn(2, 40, 8, dtype=torch.float64)
    res = dpc_knn_details(x, cluster_num=7, k=4, generator=torch.Generator().manual_seed(3))
    noise = torch.rand(2, 40, generator=torch.Generator().manual_seed(3)).numpy()
    for b in range(2):
        merged, assign, density, delta, centers = _literal_dpc_knn(x[b].numpy(), noise[b], 7, 4)
        np.testing.assert_allclose(res.density[b].numpy(), density, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(res.delta[b].numpy(), delta, rtol=1e-4, atol=1e-6)
        assert res.centers[b].tolist() == [int(c) for c in centers]
        assert res.assign[b].tolist() == assign.tolist()
        np.testing.assert_allclose(res.merged[b].numpy(), merged, rtol=1e-5, atol=1e-6)


def test_two_blobs_are_two_clusters_with_blob_means():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(10, 4, generator=gen) * 0.01 + 5.0
    b = torch.randn(6, 4, generator=gen) * 0.01 - 5.0
    x = torch.cat([a, b])[None]
    merged, assign = dpc_knn(x, cluster_num=2, k=3, generator=torch.Generator().manual_seed(1))
    assert merged.shape == (1, 2, 4) and assign.shape == (1, 16)
    assert len(set(assign[0, :10].tolist())) == 1 and len(set(assign[0, 10:].tolist())) == 1
    assert assign[0, 0] != assign[0, 10]
    torch.testing.assert_close(merged[0, assign[0, 0]], a.mean(0) * 10 / (10 + 1e-6))
    torch.testing.assert_close(merged[0, assign[0, 10]], b.mean(0) * 6 / (6 + 1e-6))


def test_centres_join_themselves_in_score_order():
    x = torch.randn(3, 64, 16)
    res = dpc_knn_details(x, cluster_num=10, k=5, generator=torch.Generator().manual_seed(0))
    for b in range(3):
        assert res.assign[b, res.centers[b]].tolist() == list(range(10))
        scores = res.score[b, res.centers[b]]
        assert torch.all(scores[:-1] >= scores[1:])
        assert res.score[b].max() == scores[0]
    # The densest token has the largest possible delta: max distance of its batch element.
    dist = torch.cdist(x, x) / math.sqrt(16)
    densest = res.density.argmax(dim=1)
    for b in range(3):
        torch.testing.assert_close(res.delta[b, densest[b]], dist[b].max())


def test_merged_token_is_mean_of_its_members():
    x = torch.randn(2, 50, 12)
    merged, assign = dpc_knn(x, 9, 5, generator=torch.Generator().manual_seed(0))
    for b in range(2):
        for c in range(9):
            members = x[b, assign[b] == c]
            assert len(members) >= 1
            torch.testing.assert_close(merged[b, c], members.sum(0) / (len(members) + 1e-6))


def test_seeded_generator_is_deterministic_and_noise_only_breaks_ties():
    # 20 points evenly spaced on a circle: every density ties, so only the noise picks the densest.
    angle = torch.arange(20, dtype=torch.float64) * 2 * math.pi / 20
    x = torch.stack([angle.cos(), angle.sin()], dim=-1)[None]
    first = [
        int(dpc_knn_details(x, 3, 3, generator=torch.Generator().manual_seed(s)).centers[0, 0])
        for s in range(8)
    ]
    again = [
        int(dpc_knn_details(x, 3, 3, generator=torch.Generator().manual_seed(s)).centers[0, 0])
        for s in range(8)
    ]
    assert first == again
    assert len(set(first)) > 1


def test_spatial_merge_256_to_112_and_batched_equals_loop():
    x = torch.randn(4, 256, 32)
    out = spatial_merge(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 112, 32) and out.dtype == x.dtype
    loop = spatial_merge_loop(x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, loop)


def test_spatial_merge_levels_compose_assignments():
    x = torch.randn(2, 256, 16)
    res = spatial_merge_details(x, generator=torch.Generator().manual_seed(0))
    assert [lvl.shape[1] for lvl in res.levels] == [64, 32, 16]
    assert all(a.shape == (2, 256) for a in res.patch_assign)
    assert int(res.patch_assign[0].max()) == 63 and int(res.patch_assign[2].max()) <= 15
    # Level-2 tokens are means of level-1 tokens; its patch map must follow level-1's map.
    for b in range(2):
        level1_to_2 = {}
        for p in range(256):
            l1, l2 = int(res.patch_assign[1][b, p]), int(res.patch_assign[2][b, p])
            assert level1_to_2.setdefault(l1, l2) == l2


def test_configurable_budgets_and_effective_k():
    x = torch.randn(1, 256, 8)
    assert spatial_merge(x, (32, 16, 8), (5, 3, 3)).shape == (1, 56, 8)
    assert spatial_merge(x, (256,), (1,)).shape == (1, 256, 8)
    assert effective_k(64, 5) == 5 and effective_k(2, 5) == 1 and effective_k(4, 5) == 2
    assert effective_k(16, 3) == 3


def test_one_cluster_per_token_with_k1_is_identity_up_to_order():
    x = torch.randn(1, 30, 6)
    merged, assign = dpc_knn(x, 30, 1)
    torch.testing.assert_close(merged[0, assign[0]], x[0] * (1 / (1 + 1e-6)))


def test_bfloat16_input_keeps_dtype():
    x = torch.randn(2, 256, 16).to(torch.bfloat16)
    assert spatial_merge(x).dtype == torch.bfloat16


def _reference_level(x: torch.Tensor, cluster_num: int, k: int, noise: torch.Tensor) -> torch.Tensor:
    """One level as docs/checkpoints.md ("Precision") reads Chat-UniVi's code, for a bf16 model.

    Distances, densities and scores in float32 from the (bf16) tokens; the mean in the tokens'
    dtype: counts, ``1 / (n_c + 1e-6)``, each ``x_i * w_i`` and the running sums rounded to bf16.
    """
    b, n, c = x.shape
    dist = torch.cdist(x.float(), x.float()) / c**0.5
    knn = torch.topk(dist, k, dim=-1, largest=False).values
    density = (-(knn**2).mean(-1)).exp() + noise * 1e-6
    denser = (density[:, None, :] > density[:, :, None]).to(x.dtype)
    dist_max = dist.flatten(1).max(-1).values[:, None, None]
    delta = (dist * denser + dist_max * (1 - denser)).min(-1).values
    centers = torch.topk(delta * density, cluster_num, dim=-1).indices
    assign = torch.gather(dist, 1, centers[:, :, None].expand(b, cluster_num, n)).argmin(1)
    assign.scatter_(1, centers, torch.arange(cluster_num).expand(b, cluster_num))
    idx = (assign + torch.arange(b)[:, None] * cluster_num).reshape(-1)
    ones = x.new_ones(b * n, 1)
    all_weight = x.new_zeros(b * cluster_num, 1).index_add_(0, idx, ones) + 1e-6
    norm_weight = ones / all_weight[idx]
    merged = x.new_zeros(b * cluster_num, c).index_add_(0, idx, x.reshape(b * n, c) * norm_weight)
    return merged.reshape(b, cluster_num, c)


def test_bfloat16_merge_follows_the_original_arithmetic():
    """bf16 tokens: each level's mean is bf16 arithmetic and the next level clusters that bf16 output."""
    from visa_lib.model.visa import TokenMerger

    torch.manual_seed(0)
    x = (torch.randn(2, 64, 16) * 3).to(torch.bfloat16)
    nums, ks = (16, 8, 4), (5, 3, 3)
    noise_gen = torch.Generator().manual_seed(11)
    levels, current = [], x
    for num, k in zip(nums, ks, strict=True):
        noise = torch.rand(current.shape[:2], generator=noise_gen)
        current = _reference_level(current, num, k, noise)
        assert current.dtype == torch.bfloat16
        levels.append(current)
    expected = torch.cat(levels, dim=1)

    ours = TokenMerger(nums, ks, seed=11)(x)  # the default: the tokens' dtype
    assert ours.dtype == torch.bfloat16 and torch.equal(ours, expected)
    fp32 = TokenMerger(nums, ks, seed=11, dtype=torch.float32)(x)  # the documented option
    assert fp32.dtype == torch.bfloat16 and not torch.equal(fp32, expected)
    # the two differ by bf16 rounding of sums, which the later levels carry forward
    assert (fp32.float() - expected.float()).abs().max() > 0


@pytest.mark.parametrize(
    ("shape", "cluster_num", "k", "match"),
    [((256, 8), 4, 3, r"\[B, N, C\]"), ((1, 10, 4), 11, 3, "cluster_num=11"), ((1, 10, 4), 3, 0, "k=0")],
)
def test_bad_arguments_raise_clear_errors(shape, cluster_num, k, match):
    with pytest.raises(ValueError, match=match):
        dpc_knn(torch.randn(*shape), cluster_num, k)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu():
    x = torch.randn(3, 256, 64)
    cpu = spatial_merge(x, generator=torch.Generator().manual_seed(0))
    gpu = spatial_merge(x.cuda(), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)
