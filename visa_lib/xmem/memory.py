"""XMem's memory manager: sensory memory, working memory and long-term memory.

* **Sensory memory** -- a hidden state ``[1, N_obj, hidden, h, w]`` updated every frame (GRU).
* **Working memory** -- keys/values of recent memory frames (every ``mem_every``-th frame, plus the mask
  frame). When it reaches ``max_mid_term_frames`` frames, frames 1..(max-min) are consolidated into
  ``num_prototypes`` prototypes and removed; frame 0 (the given mask) always stays.
* **Long-term memory** -- the prototypes; capped at ``max_long_term_elements`` by dropping the least-used.

Reading concatenates long-term and working memory and attends over both with one top-k softmax.
"""

from __future__ import annotations

import torch
from torch import Tensor

from visa_lib.xmem.affinity import get_similarity, read_memory, readout, top_k_softmax
from visa_lib.xmem.config import MemoryConfig
from visa_lib.xmem.memory_store import KeyValueMemoryStore


class MemoryManager:
    """Working + long-term memory and the sensory hidden state of one video.

    Args:
        cfg (MemoryConfig): schedule and sizes.
        hidden_dim (int): channels of the sensory memory (0 = none).
        count_long_term_usage (bool): count usage of long-term elements (needed for the long-term cap).
    """

    def __init__(self, cfg: MemoryConfig, hidden_dim: int, count_long_term_usage: bool = True) -> None:
        self.cfg = cfg
        self.hidden_dim = hidden_dim
        self.count_long_term_usage = count_long_term_usage and cfg.enable_long_term
        self.hw: int | None = None  # memory elements per frame = (H/16) * (W/16)
        self.work_mem = KeyValueMemoryStore(count_usage=cfg.enable_long_term)
        self.long_mem = KeyValueMemoryStore(count_usage=self.count_long_term_usage)
        self.hidden: Tensor | None = None
        self.consolidations = 0

    # ------------------------------------------------------------------ sizes
    @property
    def min_work_elements(self) -> int:
        """Working-memory elements left after a consolidation (``min_mid_term_frames * HW``)."""
        return self.cfg.min_mid_term_frames * (self.hw or 0)

    @property
    def max_work_elements(self) -> int:
        """Working-memory elements that trigger a consolidation (``max_mid_term_frames * HW``)."""
        return self.cfg.max_mid_term_frames * (self.hw or 0)

    # ---------------------------------------------------------------- reading
    def match_memory(self, query_key: Tensor, selection: Tensor | None) -> Tensor:
        """Read the memory for every query pixel.

        Args:
            query_key (Tensor): ``[1, Ck, h, w]``.
            selection (Tensor | None): ``[1, Ck, h, w]``.

        Returns:
            Tensor: readout ``[N_obj, Cv, h, w]``.
        """
        if not self.work_mem.engaged:
            raise RuntimeError("MemoryManager.match_memory: memory is empty; give a mask on the first frame")
        h, w = query_key.shape[-2:]
        qk = query_key.flatten(2)
        qe = None if selection is None else selection.flatten(2)
        work = self.work_mem
        if self.cfg.enable_long_term and self.long_mem.engaged:
            lt = self.long_mem
            n_lt = lt.size
            key = torch.cat([lt.key, work.key], dim=-1)  # type: ignore[list-item]
            shrinkage = torch.cat([lt.shrinkage, work.shrinkage], dim=-1)  # type: ignore[list-item]
            values = torch.cat([lt.value, work.value], dim=-1)  # type: ignore[list-item]
            out, usage = read_memory(key, shrinkage, qk, qe, values, self.cfg.top_k)
            work.update_usage(usage[:, n_lt:].flatten())
            if self.count_long_term_usage:
                lt.update_usage(usage[:, :n_lt].flatten())
        else:
            out, usage = read_memory(work.key, work.shrinkage, qk, qe, work.value, self.cfg.top_k)  # type: ignore[arg-type]
            if self.cfg.enable_long_term:
                work.update_usage(usage.flatten())
        return out.view(out.shape[0], out.shape[1], h, w)

    # ---------------------------------------------------------------- writing
    def add_memory(
        self, key: Tensor, shrinkage: Tensor, value: Tensor, selection: Tensor | None = None
    ) -> None:
        """Store one memory frame and consolidate / cap when needed.

        Args:
            key (Tensor): ``[1, Ck, h, w]``.
            shrinkage (Tensor): ``[1, 1, h, w]``.
            value (Tensor): ``[1, N_obj, Cv, h, w]``.
            selection (Tensor | None): ``[1, Ck, h, w]`` (kept only with long-term memory, for prototypes).
        """
        hw = key.shape[-2] * key.shape[-1]
        if self.hw is None:
            self.hw = hw
        elif hw != self.hw:
            raise ValueError(
                f"MemoryManager.add_memory: frame has {hw} elements, memory holds frames of {self.hw}"
            )
        self.work_mem.add(
            key.flatten(2),
            value[0].flatten(2),
            shrinkage.flatten(2),
            selection.flatten(2) if (selection is not None and self.cfg.enable_long_term) else None,
        )
        if self.cfg.enable_long_term and self.work_mem.size >= self.max_work_elements:
            cap = self.cfg.max_long_term_elements - self.cfg.num_prototypes
            if self.long_mem.size >= cap:
                self.long_mem.remove_obsolete_features(cap)
            self.compress_features()

    def compress_features(self) -> None:
        """Turn working-memory frames 1..(max-min) into prototypes in long-term memory."""
        hw = self.hw or 0
        start, end = hw, -self.min_work_elements + hw
        key, shrinkage, selection, usage, value = self.work_mem.get_all_sliced(start, end)
        p_key, p_value, p_shrinkage = self.consolidation(key, shrinkage, selection, usage, value)
        self.work_mem.sieve_by_range(start, end)
        self.long_mem.add(p_key, p_value, p_shrinkage, None)
        self.consolidations += 1

    def consolidation(
        self, key: Tensor, shrinkage: Tensor | None, selection: Tensor | None, usage: Tensor, value: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Prototypes: the most-used candidates' keys; values/shrinkage by dense attention over candidates.

        Args:
            key, shrinkage, selection: candidates ``[1, Ck, M]``, ``[1, 1, M]``, ``[1, Ck, M]``.
            usage (Tensor): ``[1, M]``.
            value (Tensor): ``[N_obj, Cv, M]``.

        Returns:
            (key ``[1, Ck, P]``, value ``[N_obj, Cv, P]``, shrinkage ``[1, 1, P]``).
        """
        k = min(self.cfg.num_prototypes, key.shape[-1])
        idx = torch.topk(usage, k=k, dim=-1, sorted=True).indices.flatten()
        p_key = key[:, :, idx]
        p_sel = None if selection is None else selection[:, :, idx]
        # Candidates act as memory, prototypes as queries; dense softmax ("potentiation").
        affinity = top_k_softmax(get_similarity(key, shrinkage, p_key, p_sel), None)
        p_value = readout(affinity, value)
        p_shrinkage = None if shrinkage is None else readout(affinity, shrinkage)
        return p_key, p_value, p_shrinkage

    # ------------------------------------------------------------ sensory memory
    def create_hidden_state(self, num_objects: int, sample_key: Tensor) -> None:
        """Zero sensory memory ``[1, num_objects, hidden, h, w]`` (extended with zeros for new objects)."""
        if self.hidden_dim <= 0:
            return
        h, w = sample_key.shape[-2:]
        zeros = torch.zeros(
            1, num_objects, self.hidden_dim, h, w, dtype=sample_key.dtype, device=sample_key.device
        )
        if self.hidden is None:
            self.hidden = zeros
        elif self.hidden.shape[1] != num_objects:
            self.hidden = torch.cat([self.hidden, zeros[:, self.hidden.shape[1] :]], dim=1)

    def set_hidden(self, hidden: Tensor | None) -> None:
        """Replace the sensory memory."""
        self.hidden = hidden

    def get_hidden(self) -> Tensor | None:
        """The sensory memory ``[1, N_obj, hidden, h, w]`` (None before the first mask or when disabled)."""
        return self.hidden

    # ------------------------------------------------------------ inspection
    def stats(self) -> dict[str, int]:
        """Sizes for plots/tests: working/long-term elements, working frames, consolidations."""
        hw = self.hw or 1
        return {
            "work_elements": self.work_mem.size,
            "work_frames": self.work_mem.size // hw,
            "long_elements": self.long_mem.size,
            "consolidations": self.consolidations,
        }
