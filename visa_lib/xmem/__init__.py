"""XMem (ECCV 2022) re-implemented for inference with the official weights, plus a trainable toy size.

Public names: :class:`XMem` (``XMem.from_checkpoint``), :class:`XMemConfig`, :class:`MemoryConfig`,
:class:`XMemTracker`, :class:`InferenceCore`, :class:`MemoryManager`.
"""

from visa_lib.xmem.config import MemoryConfig, XMemConfig
from visa_lib.xmem.inference import InferenceCore, XMemTracker
from visa_lib.xmem.memory import MemoryManager
from visa_lib.xmem.network import XMem, aggregate

__all__ = ["InferenceCore", "MemoryConfig", "MemoryManager", "XMem", "XMemConfig", "XMemTracker", "aggregate"]
