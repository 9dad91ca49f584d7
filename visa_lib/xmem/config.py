"""XMem sizes and inference hyper-parameters, as data.

Two dataclasses, one concept each:

* :class:`XMemConfig` -- the *widths* of the network (channels, number of ResNet blocks). ``official()``
  reproduces the layout of the released ``XMem.pth``; ``toy()`` is the narrow network trained on CPU for
  the tutorial. :meth:`XMemConfig.from_state_dict` reads every width back from a checkpoint, so a file
  always describes itself and a user never has to say which size it is.
* :class:`MemoryConfig` -- how the tracker uses its memory (top-k, memory interval, working/long-term
  memory sizes) and the input resolution. ``official()`` is XMem's ``eval.py`` default set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch

#: ImageNet statistics used by XMem's ``im_normalization`` (RGB in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class XMemConfig:
    """Widths of the XMem network.

    Attributes:
        key_stem (int): channels of the key encoder's 7x7 stem (official 64).
        key_planes (tuple[int, int, int]): bottleneck "planes" of the key encoder stages res2, layer2,
            layer3; each stage outputs ``4 * planes`` channels (official 64, 128, 256 -> f4 256, f8 512,
            f16 1024).
        key_blocks (tuple[int, int, int]): bottleneck blocks per key-encoder stage
            (official ResNet-50: 3, 4, 6).
        value_stem (int): channels of the value encoder's stem (official 64).
        value_planes (tuple[int, int, int]): basic-block widths of the value encoder (official 64, 128, 256).
        value_blocks (tuple[int, int, int]): basic blocks per value-encoder stage
            (official ResNet-18: 2, 2, 2).
        key_dim (int): channels of the memory key (official 64).
        value_dim (int): channels of a memory value per object (official 512).
        hidden_dim (int): channels of the sensory memory; 0 disables it ("XMem-no-sensory").
        decoder_dims (tuple[int, int, int]): decoder widths at 1/16, 1/8 and 1/4 (official 512, 256, 256).
        hidden_mid_dim (int): width inside the sensory-memory updater (official 256).
        cbam_reduction (int): channel reduction of CBAM's shared MLP (official 16).
    """

    key_stem: int = 64
    key_planes: tuple[int, int, int] = (64, 128, 256)
    key_blocks: tuple[int, int, int] = (3, 4, 6)
    value_stem: int = 64
    value_planes: tuple[int, int, int] = (64, 128, 256)
    value_blocks: tuple[int, int, int] = (2, 2, 2)
    key_dim: int = 64
    value_dim: int = 512
    hidden_dim: int = 64
    decoder_dims: tuple[int, int, int] = (512, 256, 256)
    hidden_mid_dim: int = 256
    cbam_reduction: int = 16

    #: Bottleneck expansion of the key encoder (ResNet-50 style).
    EXPANSION = 4

    @property
    def f16_dim(self) -> int:
        """Channels of the key encoder's 1/16 feature (1024 for the official network)."""
        return self.key_planes[2] * self.EXPANSION

    @property
    def f8_dim(self) -> int:
        """Channels of the key encoder's 1/8 feature (512 official)."""
        return self.key_planes[1] * self.EXPANSION

    @property
    def f4_dim(self) -> int:
        """Channels of the key encoder's 1/4 feature (256 official)."""
        return self.key_planes[0] * self.EXPANSION

    @classmethod
    def official(cls) -> XMemConfig:
        """The widths of the released ``XMem.pth`` (62.2 M parameters)."""
        return cls()

    @classmethod
    def toy(cls) -> XMemConfig:
        """A narrow XMem (same modules and key names) small enough to train on one CPU core."""
        return cls(
            key_stem=16,
            key_planes=(8, 16, 32),
            key_blocks=(1, 2, 2),
            value_stem=16,
            value_planes=(16, 16, 32),
            value_blocks=(1, 1, 1),
            key_dim=16,
            value_dim=64,
            hidden_dim=16,
            decoder_dims=(64, 32, 32),
            hidden_mid_dim=32,
            cbam_reduction=8,
        )

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> XMemConfig:
        """Read every width back from an XMem state dict (official or toy).

        Args:
            state_dict (Mapping[str, Tensor]): an XMem ``state_dict()``.

        Returns:
            XMemConfig: the widths that rebuild a module with exactly these shapes.

        Raises:
            KeyError: when a key that carries a width is missing (the message names it).
        """

        def shape(key: str) -> tuple[int, ...]:
            if key not in state_dict:
                raise KeyError(
                    f"XMem checkpoint has no '{key}'; is this an XMem state dict? "
                    f"(first keys: {list(state_dict)[:3]})"
                )
            return tuple(state_dict[key].shape)

        def blocks(prefix: str) -> int:
            pat = re.compile(re.escape(prefix) + r"\.(\d+)\.")
            ids = {int(m.group(1)) for k in state_dict if (m := pat.match(k))}
            if not ids:
                raise KeyError(f"XMem checkpoint has no '{prefix}.<i>.*' keys")
            return max(ids) + 1

        key_stages = ("key_encoder.res2", "key_encoder.layer2", "key_encoder.layer3")
        value_stages = ("value_encoder.layer1", "value_encoder.layer2", "value_encoder.layer3")
        hidden_key = "decoder.hidden_update.transform.weight"
        hidden_dim = shape(hidden_key)[0] // 3 if hidden_key in state_dict else 0
        return cls(
            key_stem=shape("key_encoder.conv1.weight")[0],
            key_planes=tuple(shape(f"{s}.0.conv1.weight")[0] for s in key_stages),  # type: ignore[arg-type]
            key_blocks=tuple(blocks(s) for s in key_stages),  # type: ignore[arg-type]
            value_stem=shape("value_encoder.conv1.weight")[0],
            value_planes=tuple(shape(f"{s}.0.conv1.weight")[0] for s in value_stages),  # type: ignore[arg-type]
            value_blocks=tuple(blocks(s) for s in value_stages),  # type: ignore[arg-type]
            key_dim=shape("key_proj.key_proj.weight")[0],
            value_dim=shape("value_encoder.fuser.block2.conv2.weight")[0],
            hidden_dim=hidden_dim,
            decoder_dims=(
                shape("decoder.fuser.block2.conv2.weight")[0],
                shape("decoder.up_16_8.out_conv.conv2.weight")[0],
                shape("decoder.up_8_4.out_conv.conv2.weight")[0],
            ),
            hidden_mid_dim=shape("decoder.hidden_update.g16_conv.weight")[0] if hidden_dim else 256,
            cbam_reduction=max(
                1,
                shape("decoder.fuser.block2.conv2.weight")[0]
                // shape("decoder.fuser.attention.ChannelGate.mlp.1.weight")[0],
            ),
        )


@dataclass(frozen=True)
class MemoryConfig:
    """How the tracker reads and writes memory (XMem ``eval.py`` defaults) and at which resolution.

    Attributes:
        top_k (int): memory elements kept per query pixel in the sparse softmax (30).
        mem_every (int): a memory frame every ``mem_every`` processed frames (5).
        deep_update_every (int): value-encoder update of the sensory memory; -1 = on memory frames.
        enable_long_term (bool): use working + long-term memory (True). False = unbounded working memory.
        min_mid_term_frames (int): frames left in working memory after consolidation (5).
        max_mid_term_frames (int): working-memory frames that trigger consolidation (10).
        max_long_term_elements (int): cap of the long-term store (10 000).
        num_prototypes (int): prototypes made per consolidation (128).
        count_long_term_usage (bool | None): count usage of long-term elements; None = XMem's rule
            (only for videos of at least ``max_long_term_elements / (max-min) * num_prototypes`` frames).
        size (int): shorter side the frames are resized to (480); -1 keeps the native resolution.
    """

    top_k: int = 30
    mem_every: int = 5
    deep_update_every: int = -1
    enable_long_term: bool = True
    min_mid_term_frames: int = 5
    max_mid_term_frames: int = 10
    max_long_term_elements: int = 10000
    num_prototypes: int = 128
    count_long_term_usage: bool | None = None
    size: int = 480

    @classmethod
    def official(cls) -> MemoryConfig:
        """XMem's evaluation defaults, shorter side 480 (what VISA runs)."""
        return cls()

    @classmethod
    def toy(cls) -> MemoryConfig:
        """The same memory schedule at the toy network's resolution (shorter side 192: 240x320 -> 192x256)."""
        return cls(size=192)

    def with_(self, **changes: object) -> MemoryConfig:
        """Return a copy with some fields changed (``cfg.with_(size=240)``)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def long_term_usage_for(self, num_frames: int | None) -> bool:
        """Whether long-term usage is counted for a video of ``num_frames`` frames (XMem's rule)."""
        if self.count_long_term_usage is not None:
            return self.count_long_term_usage
        if not self.enable_long_term:
            return False
        if (
            num_frames is None
        ):  # unknown length (streamed): count, so the long-term cap can always be enforced
            return True
        span = self.max_mid_term_frames - self.min_mid_term_frames
        return num_frames / span * self.num_prototypes >= self.max_long_term_elements
