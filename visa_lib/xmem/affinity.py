"""Memory reading as attention: XMem's anisotropic L2 similarity and the top-k softmax.

For memory keys ``k_n`` (with shrinkage ``s_n >= 1``) and a query key ``q_p`` (with selection
``e_p in (0,1)^C``) the similarity is

    S[n, p] = -(s_n / sqrt(C)) * sum_c e_p[c] * (k_n[c] - q_p[c])^2

and the affinity keeps the ``top_k`` largest similarities of each query pixel ``p`` along the memory axis
``n``, softmax-normalised. The readout is ``values @ affinity``.

``read_memory`` computes the three steps in blocks of query pixels: every step is independent per query
pixel (the top-k runs along the memory axis), so the result is the same as one pass, while the
``[N, P]`` temporaries shrink to ``[N, block]``. With long-term memory near its cap (N ~ 10,000) one
pass over P = 1,200 query pixels would hold several 48 MB tensors at once (docs/robustness.md).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Query pixels read per block by ``read_memory``: [N, 256] float32 is 10 MB at XMem's 10,000-element cap.
QUERY_BLOCK = 256


def get_similarity(mk: Tensor, ms: Tensor | None, qk: Tensor, qe: Tensor | None) -> Tensor:
    """Similarity between every memory element and every query pixel.

    Args:
        mk (Tensor): memory keys ``[B, C, N]``.
        ms (Tensor | None): memory shrinkage ``[B, 1, N]`` (None = 1).
        qk (Tensor): query keys ``[B, C, P]``.
        qe (Tensor | None): query selection ``[B, C, P]``. Without it the query-norm term is dropped,
            as in XMem (it is constant per query pixel and cancels in the softmax).

    Returns:
        Tensor: ``[B, N, P]``.
    """
    ck = mk.shape[1]
    mk_t = mk.transpose(1, 2)  # [B, N, C]
    if qe is not None:
        # Expand (k - q)^2 = k^2 - 2kq + q^2, each term weighted per query channel by qe.
        a_sq = mk_t.pow(2) @ qe
        two_ab = 2 * (mk_t @ (qk * qe))
        b_sq = (qe * qk.pow(2)).sum(dim=1, keepdim=True)
        similarity = -a_sq + two_ab - b_sq
    else:
        a_sq = mk.pow(2).sum(dim=1).unsqueeze(2)
        two_ab = 2 * (mk_t @ qk)
        similarity = -a_sq + two_ab
    if ms is not None:
        similarity = similarity * ms.transpose(1, 2)
    return similarity / math.sqrt(ck)


def top_k_softmax(similarity: Tensor, top_k: int | None) -> Tensor:
    """Softmax over the memory axis (dim 1), keeping only each query's ``top_k`` largest entries.

    The per-query maximum is subtracted before ``exp``. XMem's top-k branch omits this; it is the same
    value mathematically but avoids exp underflow to 0/0 = NaN when similarities are very negative.

    Args:
        similarity (Tensor): ``[B, N, P]``.
        top_k (int | None): entries kept per query; None (or >= N) = dense softmax.

    Returns:
        Tensor: affinity ``[B, N, P]``; every column sums to 1 and has at most ``top_k`` non-zeros.
    """
    if top_k is None or top_k >= similarity.shape[1]:
        return torch.softmax(similarity, dim=1)
    values, indices = torch.topk(similarity, k=top_k, dim=1)
    weights = torch.softmax(values, dim=1)  # softmax subtracts the max (= values[:, 0])
    return torch.zeros_like(similarity).scatter_(1, indices, weights)


def readout(affinity: Tensor, values: Tensor) -> Tensor:
    """Weighted sum of memory values.

    Args:
        affinity (Tensor): ``[1, N, P]`` (shared by all objects).
        values (Tensor): ``[N_obj, C, N]``.

    Returns:
        Tensor: ``[N_obj, C, P]``.
    """
    return values @ affinity


def read_memory(
    mk: Tensor,
    ms: Tensor | None,
    qk: Tensor,
    qe: Tensor | None,
    values: Tensor,
    top_k: int | None,
    block: int = QUERY_BLOCK,
) -> tuple[Tensor, Tensor]:
    """Similarity -> top-k softmax -> readout, ``block`` query pixels at a time.

    Equal to ``readout(top_k_softmax(get_similarity(mk, ms, qk, qe), top_k), values)`` (and the affinity's
    sum over query pixels) without holding any ``[N, P]`` tensor for more than ``block`` pixels.

    Args:
        mk (Tensor): memory keys ``[1, C, N]``.
        ms (Tensor | None): memory shrinkage ``[1, 1, N]``.
        qk (Tensor): query keys ``[1, C, P]``.
        qe (Tensor | None): query selection ``[1, C, P]``.
        values (Tensor): memory values ``[N_obj, Cv, N]``.
        top_k (int | None): entries kept per query pixel (None = dense softmax).
        block (int): query pixels per block (>= 1).

    Returns:
        tuple[Tensor, Tensor]: readout ``[N_obj, Cv, P]`` and usage ``[1, N]`` (the affinity summed over P).
    """
    if block < 1:
        raise ValueError(f"read_memory: block must be >= 1, got {block}")
    p = qk.shape[-1]
    out = values.new_empty(values.shape[0], values.shape[1], p)
    usage = mk.new_zeros(mk.shape[0], mk.shape[-1])
    for start in range(0, p, block):
        end = min(start + block, p)
        part_e = None if qe is None else qe[..., start:end]
        affinity = top_k_softmax(get_similarity(mk, ms, qk[..., start:end], part_e), top_k)
        usage += affinity.sum(dim=2)
        out[..., start:end] = readout(affinity, values)
        del affinity  # free this block's [N, block] before the next one is built
    return out, usage
