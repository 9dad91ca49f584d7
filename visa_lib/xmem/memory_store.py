"""A key-value memory store with usage counting (one store = working OR long-term memory).

Keys, shrinkage and selection are shared by all objects: ``[1, C, N]``; values hold one vector per object
per element: ``[N_obj, C_v, N]``. All objects are assumed to be given on the first mask frame (one
"object group" in XMem's terms), which is how ``propagate`` uses the tracker.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Initial "life" of a new element, so that usage = use / life is defined before the first read.
INITIAL_LIFE = 1e-7


class KeyValueMemoryStore:
    """Growing store of memory elements with optional usage statistics.

    Args:
        count_usage (bool): keep ``use_count`` (summed affinity) and ``life_count`` (reads) per element.
    """

    def __init__(self, count_usage: bool) -> None:
        self.count_usage = count_usage
        self.key: Tensor | None = None  # [1, Ck, N]
        self.shrinkage: Tensor | None = None  # [1, 1, N]
        self.selection: Tensor | None = None  # [1, Ck, N]
        self.value: Tensor | None = None  # [N_obj, Cv, N]
        self.use_count: Tensor | None = None  # [1, 1, N]
        self.life_count: Tensor | None = None  # [1, 1, N]

    @property
    def size(self) -> int:
        """Number of memory elements N."""
        return 0 if self.key is None else self.key.shape[-1]

    @property
    def engaged(self) -> bool:
        """Whether the store holds anything."""
        return self.key is not None

    def add(self, key: Tensor, value: Tensor, shrinkage: Tensor | None, selection: Tensor | None) -> None:
        """Append elements: key ``[1,Ck,n]``, value ``[N_obj,Cv,n]``, shrinkage ``[1,1,n]``,
        selection ``[1,Ck,n]``."""
        n = key.shape[-1]
        if self.value is not None and value.shape[0] != self.value.shape[0]:
            raise ValueError(
                f"KeyValueMemoryStore.add: {value.shape[0]} objects, the store holds {self.value.shape[0]}; "
                "all objects must be given on the first mask frame"
            )
        self.key = _cat(self.key, key)
        self.value = _cat(self.value, value)
        self.shrinkage = _cat(self.shrinkage, shrinkage)
        self.selection = _cat(self.selection, selection)
        if self.count_usage:
            self.use_count = _cat(self.use_count, torch.zeros(1, 1, n, dtype=key.dtype, device=key.device))
            self.life_count = _cat(
                self.life_count, torch.full((1, 1, n), INITIAL_LIFE, dtype=key.dtype, device=key.device)
            )

    def update_usage(self, usage: Tensor) -> None:
        """Add one read: ``use_count += usage`` (``[N]`` summed affinity), ``life_count += 1``."""
        if not self.count_usage or self.use_count is None or self.life_count is None:
            return
        self.use_count += usage.view_as(self.use_count)
        self.life_count += 1

    def get_usage(self) -> Tensor:
        """Mean affinity per read of every element, ``[1, N]``."""
        if not self.count_usage or self.use_count is None or self.life_count is None:
            raise RuntimeError("KeyValueMemoryStore.get_usage: this store does not count usage")
        return (self.use_count / self.life_count).flatten(1)

    def get_all_sliced(
        self, start: int, end: int
    ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor, Tensor]:
        """Elements ``[start:end]`` (``end == 0`` = to the end): key, shrinkage, selection, usage, value."""
        sl = slice(start, end if end != 0 else None)
        assert self.key is not None and self.value is not None
        return (
            self.key[:, :, sl],
            None if self.shrinkage is None else self.shrinkage[:, :, sl],
            None if self.selection is None else self.selection[:, :, sl],
            self.get_usage()[:, sl],
            self.value[:, :, sl],
        )

    def sieve_by_range(self, start: int, end: int) -> None:
        """Remove elements ``[start:end]`` (``end == 0`` = to the end)."""

        def cut(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            return t[:, :, :start] if end == 0 else torch.cat([t[:, :, :start], t[:, :, end:]], dim=-1)

        self.key, self.shrinkage, self.selection = cut(self.key), cut(self.shrinkage), cut(self.selection)
        self.value, self.use_count, self.life_count = (
            cut(self.value),
            cut(self.use_count),
            cut(self.life_count),
        )

    def remove_obsolete_features(self, max_size: int) -> None:
        """Shrink to at most ``max_size`` elements by dropping the least used ones.

        Survivors are the elements whose usage is strictly greater than the ``(size - max_size)``-th
        smallest usage (XMem's rule; ties at the threshold are dropped too).
        """
        excess = self.size - max_size
        if excess <= 0:
            return
        usage = self.get_usage().flatten()
        threshold = torch.topk(usage, k=excess, largest=False, sorted=True).values[-1]
        keep = usage > threshold

        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[:, :, keep]

        self.key, self.shrinkage, self.selection = pick(self.key), pick(self.shrinkage), pick(self.selection)
        self.value, self.use_count, self.life_count = (
            pick(self.value),
            pick(self.use_count),
            pick(self.life_count),
        )


def _cat(old: Tensor | None, new: Tensor | None) -> Tensor | None:
    """Concatenate along the element axis, treating None as empty."""
    if new is None:
        return old
    return new if old is None else torch.cat([old, new], dim=-1)
