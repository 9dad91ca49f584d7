"""XMem's per-frame inference loop (``InferenceCore``) and a tracker that owns the network.

:class:`XMemTracker` is what users hold: a network + :class:`MemoryConfig`. Every propagation pass calls
:meth:`XMemTracker.new_session`, a fresh :class:`InferenceCore` whose memory starts empty -- VISA runs its
forward and backward passes as two independent XMem runs that both start at the target frame.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from visa_lib.paths import TOY_WEIGHTS
from visa_lib.xmem.config import MemoryConfig
from visa_lib.xmem.memory import MemoryManager
from visa_lib.xmem.network import XMem, soft_aggregate
from visa_lib.xmem.processing import pad_divide_by, unpad

#: File name of the shipped toy weights (written by scripts/train_toy_xmem.py).
TOY_XMEM_FILE = "toy_xmem.safetensors"


class InferenceCore:
    """One XMem run over one video (frames fed in order).

    Args:
        network (XMem): the network, in eval mode.
        cfg (MemoryConfig): memory schedule.
        num_frames (int | None): video length if known (decides long-term usage counting, as XMem does).
    """

    def __init__(self, network: XMem, cfg: MemoryConfig, num_frames: int | None = None) -> None:
        self.network = network
        self.cfg = cfg
        self.memory = MemoryManager(cfg, network.hidden_dim, cfg.long_term_usage_for(num_frames))
        self.curr_ti = -1
        self.last_mem_ti = 0
        self.last_deep_update_ti = -cfg.deep_update_every
        self.num_objects = 0
        #: Per processed frame: (is_memory_frame, memory stats after the step); for plots and tests.
        self.history: list[tuple[bool, dict[str, int]]] = []

    @torch.inference_mode()
    def step(self, image: Tensor, mask: Tensor | None = None, end: bool = False) -> Tensor:
        """Process one frame.

        Args:
            image (Tensor): normalised frame ``[3, H, W]`` (any H, W; padded here).
            mask (Tensor | None): per-object masks ``[N_obj, H, W]`` (float 0/1 or soft) for every object;
                given on the first frame.
            end (bool): this is the last frame (it is not memorised).

        Returns:
            Tensor: probabilities ``[N_obj + 1, H, W]`` (background first).
        """
        cfg = self.cfg
        self.curr_ti += 1
        image, pad = pad_divide_by(image)
        image = image.unsqueeze(0)
        if self.curr_ti == 0 and mask is None:
            raise ValueError("InferenceCore.step: the first frame needs a mask")

        is_mem_frame = (self.curr_ti - self.last_mem_ti >= cfg.mem_every or mask is not None) and not end
        need_segment = self.curr_ti > 0 and mask is None
        deep_sync = cfg.deep_update_every < 0
        is_deep_update = (deep_sync and is_mem_frame) or (
            not deep_sync and self.curr_ti - self.last_deep_update_ti >= cfg.deep_update_every
        )
        is_normal_update = (not deep_sync or not is_deep_update) and not end

        key, shrinkage, selection, f16, f8, f4 = self.network.encode_key(
            image, need_sk=is_mem_frame, need_ek=cfg.enable_long_term or need_segment
        )

        prob_with_bg: Tensor | None = None
        if need_segment:
            readout = self.memory.match_memory(key, selection).unsqueeze(0)
            hidden, _, prob = self.network.segment(
                (f16, f8, f4), readout, self.memory.get_hidden(), h_out=is_normal_update, strip_bg=False
            )
            prob_with_bg = prob[0]
            if is_normal_update:
                self.memory.set_hidden(hidden)

        if mask is not None:
            mask, _ = pad_divide_by(mask.float())
            _, prob_with_bg = soft_aggregate(mask, dim=0)
            self.num_objects = mask.shape[0]
            self.memory.create_hidden_state(self.num_objects, key)

        assert prob_with_bg is not None
        if is_mem_frame:
            value, hidden = self.network.encode_value(
                image,
                f16,
                self.memory.get_hidden(),
                prob_with_bg[1:].unsqueeze(0),
                is_deep_update=is_deep_update,
            )
            self.memory.add_memory(key, shrinkage, value, selection if cfg.enable_long_term else None)  # type: ignore[arg-type]
            self.last_mem_ti = self.curr_ti
            if is_deep_update:
                self.memory.set_hidden(hidden)
                self.last_deep_update_ti = self.curr_ti
        self.history.append((is_mem_frame, self.memory.stats()))
        return unpad(prob_with_bg, pad)


class XMemTracker:
    """An XMem network with its memory settings; :func:`visa_lib.xmem.propagate.propagate` takes one.

    Args:
        network (XMem): the network (put in eval mode here).
        memory (MemoryConfig | None): schedule and resolution (default: official).
        device (str | torch.device | None): where to run (default: the network's device).
    """

    def __init__(
        self, network: XMem, memory: MemoryConfig | None = None, device: str | torch.device | None = None
    ) -> None:
        self.network = network.eval()
        self.memory = memory or MemoryConfig.official()
        if device is not None:
            self.network.to(device)
        self.device = next(self.network.parameters()).device

    def new_session(self, num_frames: int | None = None) -> InferenceCore:
        """A fresh :class:`InferenceCore` (empty memory) for one pass over ``num_frames`` frames."""
        return InferenceCore(self.network, self.memory, num_frames)

    @classmethod
    def official(
        cls, checkpoint: str | Path, memory: MemoryConfig | None = None, device: str | torch.device = "cpu"
    ) -> XMemTracker:
        """Load ``XMem.pth`` strictly with XMem's evaluation defaults (shorter side 480)."""
        return cls(XMem.from_checkpoint(checkpoint), memory or MemoryConfig.official(), device)

    @classmethod
    def toy(
        cls,
        path: str | Path | None = None,
        memory: MemoryConfig | None = None,
        device: str | torch.device = "cpu",
    ) -> XMemTracker:
        """Load the shipped toy XMem (``data_samples/weights/toy_xmem.safetensors``) at the toy resolution."""
        return cls(
            XMem.from_checkpoint(path or TOY_WEIGHTS / TOY_XMEM_FILE), memory or MemoryConfig.toy(), device
        )
