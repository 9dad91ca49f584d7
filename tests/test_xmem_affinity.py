"""Memory reading math on tiny tensors, checked against explicit hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from visa_lib.xmem.affinity import get_similarity, read_memory, readout, top_k_softmax


def _loop_similarity(mk, ms, qk, qe):
    """S[n,p] = -(ms[n]/sqrt(C)) * sum_c qe[c,p] (mk[c,n] - qk[c,p])^2, one element at a time."""
    c, n = mk.shape[1:]
    p = qk.shape[2]
    out = torch.zeros(1, n, p, dtype=torch.float64)
    for i in range(n):
        for j in range(p):
            d = 0.0
            for k in range(c):
                w = qe[0, k, j] if qe is not None else 1.0
                d += w * (mk[0, k, i] - qk[0, k, j]) ** 2
            s = ms[0, 0, i] if ms is not None else 1.0
            out[0, i, j] = -s * d / math.sqrt(c)
    return out


def test_similarity_matches_hand_computation():
    g = torch.Generator().manual_seed(0)
    mk, qk = (
        torch.randn(1, 4, 7, generator=g, dtype=torch.float64),
        torch.randn(1, 4, 5, generator=g, dtype=torch.float64),
    )
    ms = torch.rand(1, 1, 7, generator=g, dtype=torch.float64) ** 2 + 1
    qe = torch.rand(1, 4, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(get_similarity(mk, ms, qk, qe), _loop_similarity(mk, ms, qk, qe))


def test_similarity_without_selection_drops_query_norm():
    g = torch.Generator().manual_seed(1)
    mk, qk = (
        torch.randn(1, 3, 6, generator=g, dtype=torch.float64),
        torch.randn(1, 3, 4, generator=g, dtype=torch.float64),
    )
    full = _loop_similarity(mk, None, qk, None)
    query_norm = (qk**2).sum(1, keepdim=True) / math.sqrt(3)  # [1, 1, P]: constant per query pixel
    torch.testing.assert_close(get_similarity(mk, None, qk, None), full + query_norm)
    # ...which a softmax over the memory axis does not see
    torch.testing.assert_close(torch.softmax(get_similarity(mk, None, qk, None), 1), torch.softmax(full, 1))


def test_shrinkage_scales_memory_rows_and_divides_by_sqrt_c():
    mk = torch.tensor([[[0.0, 1.0]]])  # C=1, N=2
    qk = torch.tensor([[[3.0]]])
    s = get_similarity(mk, torch.tensor([[[2.0, 1.0]]]), qk, torch.ones(1, 1, 1))
    assert torch.allclose(s.flatten(), torch.tensor([-2.0 * 9, -1.0 * 4]))  # sqrt(C) = 1


def test_top_k_softmax_by_hand():
    sim = torch.tensor([[[1.0, 0.0], [3.0, 5.0], [2.0, 4.0], [0.0, -1.0]]])  # N=4, P=2
    aff = top_k_softmax(sim, top_k=2)
    e = math.exp
    col0 = [0, e(3) / (e(3) + e(2)), e(2) / (e(3) + e(2)), 0]
    col1 = [0, e(5) / (e(5) + e(4)), e(4) / (e(5) + e(4)), 0]
    torch.testing.assert_close(aff[0], torch.tensor([col0, col1]).T)
    assert torch.allclose(aff.sum(1), torch.ones(1, 2))


def test_top_k_softmax_is_stable_for_very_negative_similarities():
    sim = torch.tensor([[[-1000.0], [-1001.0], [-5000.0]]])
    aff = top_k_softmax(sim, top_k=2)
    assert torch.isfinite(aff).all()
    torch.testing.assert_close(
        aff[0, :, 0], torch.tensor([1 / (1 + math.exp(-1)), 1 / (1 + math.exp(1)), 0.0])
    )
    # the official formulation (exp without max subtraction) gives 0/0 here
    values = torch.topk(sim, 2, dim=1).values.exp()
    assert torch.isnan(values / values.sum(1, keepdim=True)).all()


def test_dense_softmax_when_k_covers_memory():
    sim = torch.randn(1, 5, 3)
    torch.testing.assert_close(top_k_softmax(sim, None), torch.softmax(sim, 1))
    torch.testing.assert_close(top_k_softmax(sim, 30), torch.softmax(sim, 1))


def test_readout_is_weighted_sum_per_object():
    values = torch.tensor([[[1.0, 10.0, 100.0]], [[2.0, 20.0, 200.0]]])  # N_obj=2, C=1, N=3
    aff = torch.tensor([[[0.5], [0.5], [0.0]]])  # one query pixel
    assert torch.equal(readout(aff, values).flatten(), torch.tensor([5.5, 11.0]))


@pytest.mark.parametrize("top_k", [None, 5])
@pytest.mark.parametrize("with_selection", [True, False])
def test_read_memory_in_blocks_equals_one_pass(top_k, with_selection):
    g = torch.Generator().manual_seed(3)
    n, c, p = 40, 8, 37  # 37 query pixels: blocks of 8 leave a short last block
    mk, qk = torch.randn(1, c, n, generator=g), torch.randn(1, c, p, generator=g)
    ms = 1 + torch.rand(1, 1, n, generator=g)
    qe = torch.rand(1, c, p, generator=g) if with_selection else None
    values = torch.randn(2, 6, n, generator=g)
    affinity = top_k_softmax(get_similarity(mk, ms, qk, qe), top_k)
    want_out, want_usage = readout(affinity, values), affinity.sum(dim=2)
    for block in (1, 8, p, 1000):
        out, usage = read_memory(mk, ms, qk, qe, values, top_k, block=block)
        torch.testing.assert_close(out, want_out, rtol=0, atol=1e-6)
        torch.testing.assert_close(usage, want_usage, rtol=0, atol=1e-6)


def test_read_memory_rejects_an_empty_block():
    with pytest.raises(ValueError, match="block must be >= 1"):
        mk, qk, values = torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), torch.zeros(1, 1, 3)
        read_memory(mk, None, qk, None, values, None, block=0)
