"""XMem (ECCV 2022) re-implemented for inference with the official weights, plus a trainable toy size.

Public names: :class:`XMem` (``XMem.from_checkpoint``), :class:`XMemConfig`, :class:`MemoryConfig`,
:class:`XMemTracker`, :class:`InferenceCore`, :class:`MemoryManager`, and VISA's last step:
:func:`track` (one XMem run, frame by frame, as a generator), :func:`track_both_ways` (VISA's two runs,
one mask per frame as it comes) and :func:`propagate` (both ways, all frames at once).
"""

from visa_lib.xmem.config import MemoryConfig, XMemConfig
from visa_lib.xmem.inference import InferenceCore, XMemTracker
from visa_lib.xmem.memory import MemoryManager
from visa_lib.xmem.network import XMem, soft_aggregate
from visa_lib.xmem.propagate import propagate, track, track_both_ways

__all__ = [
    "InferenceCore",
    "MemoryConfig",
    "MemoryManager",
    "XMem",
    "XMemConfig",
    "XMemTracker",
    "propagate",
    "soft_aggregate",
    "track",
    "track_both_ways",
]
