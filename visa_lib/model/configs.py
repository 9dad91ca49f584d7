"""Sizes and switches of every VISA model we build, as data: ``VisaConfig`` and a registry.

A user moves between rungs by changing one name: ``build_visa("toy")`` on a laptop CPU,
``build_visa("chatunivi-7b", weights=...)`` on a GPU. Everything architectural that differs between
the two (LLM dimensions, which vision tower and SAM, tokens per frame) is a field here; the model
code is the same. Runtime knobs -- dtype, 8/4-bit loading, gradient checkpointing -- are arguments
of ``build_visa``, and LoRA's settings (:class:`LoraSettings`) an argument of ``prepare_for_training``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

#: dtype names accepted by ``build_visa(dtype=...)``.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


@dataclass(frozen=True)
class LlmDims:
    """Shape of a LLaMA-family decoder (fields named as in ``transformers.LlamaConfig``).

    Attributes:
      vocab_size (int): rows of ``embed_tokens`` before ``[SEG]`` is added (32000 for Vicuna/LLaMA).
      hidden_size (int): H, width of the hidden states; the ``[SEG]`` head reads H numbers.
      intermediate_size (int): width of the SwiGLU MLP.
      num_hidden_layers (int), num_attention_heads (int), num_key_value_heads (int): attention layout.
      max_position_embeddings (int): longest sequence for RoPE (visual tokens count too).
      rms_norm_eps (float): RMSNorm epsilon.
      tie_word_embeddings (bool): whether ``lm_head`` shares ``embed_tokens`` (False for LLaMA).
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False


@dataclass(frozen=True)
class LoraSettings:
    """LoRA on the LLM, VISA's recipe by default (an argument of ``prepare_for_training``).

    Attributes:
      r (int), alpha (int), dropout (float): rank, scaling numerator and dropout of the adapters.
      targets (tuple[str, ...]): names of the ``nn.Linear`` layers that get adapters.
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: tuple[str, ...] = field(default=("q_proj", "v_proj"))


#: VISA's LoRA: r 8, alpha 16, dropout 0.05 on every q_proj / v_proj.
VISA_LORA = LoraSettings()


@dataclass(frozen=True)
class VisaConfig:
    """Everything ``build_visa`` needs to assemble a VISA model.

    Attributes:
      name (str): registry key.
      llm (LlmDims): LLM shape (on the full rung the checkpoint's ``config.json`` is authoritative
        and must agree with these numbers).
      vision_tower (str): name passed to ``visa_lib.model.vision.build_vision_tower``.
      vision_hidden_size (int): C, width of the vision tower's patch tokens (``mm_hidden_size``).
      vision_patches (int): patch tokens per frame before merging (256 for CLIP ViT-L/14 at 224 px).
      sam (str): name passed to ``visa_lib.model.sam.build_sam``.
      tokenizer (str): "toy" (``build_toy_tokenizer``, vocabulary saved with the weights) or
        "checkpoint" (read from the checkpoint folder).
      prompt_dim (int): D, SAM's prompt width = output of the ``[SEG]`` head (256 real, 64 toy).
      cluster_nums (tuple[int, ...]): DPC-KNN clusters per level; their sum is tokens per frame.
      cluster_ks (tuple[int, ...]): k per level.
    """

    name: str
    llm: LlmDims
    vision_tower: str
    vision_hidden_size: int
    sam: str
    prompt_dim: int
    tokenizer: str = "checkpoint"
    vision_patches: int = 256
    cluster_nums: tuple[int, ...] = (64, 32, 16)
    cluster_ks: tuple[int, ...] = (5, 3, 3)

    def __post_init__(self) -> None:
        if self.tokenizer not in ("toy", "checkpoint"):
            raise ValueError(f"VisaConfig {self.name!r}: tokenizer must be 'toy' or 'checkpoint'")
        if len(self.cluster_nums) != len(self.cluster_ks):
            raise ValueError(f"VisaConfig {self.name!r}: cluster_nums and cluster_ks differ in length")

    @property
    def tokens_per_frame(self) -> int:
        """Visual tokens each ``<image>`` slot becomes (112 = 64 + 32 + 16 for VISA)."""
        return int(sum(self.cluster_nums))

    def replace(self, **changes: object) -> VisaConfig:
        """A copy with some fields changed, e.g. ``cfg.replace(cluster_nums=(32, 16, 8))``."""
        return dataclasses.replace(self, **changes)

    def llama_config(self, vocab_size: int | None = None):  # -> transformers.LlamaConfig
        """The ``transformers.LlamaConfig`` of this LLM.

        Arguments:
          vocab_size (int | None): override the vocabulary size (e.g. the toy tokenizer's length).
        """
        from transformers import LlamaConfig

        dims = self.llm
        return LlamaConfig(
            vocab_size=vocab_size if vocab_size is not None else dims.vocab_size,
            hidden_size=dims.hidden_size,
            intermediate_size=dims.intermediate_size,
            num_hidden_layers=dims.num_hidden_layers,
            num_attention_heads=dims.num_attention_heads,
            num_key_value_heads=dims.num_key_value_heads,
            max_position_embeddings=dims.max_position_embeddings,
            rms_norm_eps=dims.rms_norm_eps,
            tie_word_embeddings=dims.tie_word_embeddings,
            use_cache=False,
        )


# Chat-UniVi-7B / 13B are LLaMA/Vicuna-7B / 13B shaped (docs/sam_and_seg_head.md, docs/merging.md).
_LLAMA_7B = LlmDims(32000, 4096, 11008, 32, 32, 32, max_position_embeddings=4096, rms_norm_eps=1e-5)
_LLAMA_13B = LlmDims(32000, 5120, 13824, 40, 40, 40, max_position_embeddings=4096, rms_norm_eps=1e-5)


def _full_rung(name: str, llm: LlmDims) -> VisaConfig:
    """Chat-UniVi + CLIP ViT-L/14 + SAM ViT-H: VISA's own architecture."""
    return VisaConfig(
        name=name,
        llm=llm,
        vision_tower="clip-vit-large-patch14",
        vision_hidden_size=1024,
        sam="vit_h",
        prompt_dim=256,
    )


#: Every named configuration. The toy LLM's vocabulary is replaced by the toy tokenizer's length.
CONFIGS: dict[str, VisaConfig] = {
    "toy": VisaConfig(
        name="toy",
        llm=LlmDims(
            vocab_size=256,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=2048,
        ),
        vision_tower="toy",
        vision_hidden_size=128,
        sam="toy",
        prompt_dim=64,
        tokenizer="toy",
        # 16 + 8 + 4 = 28 tokens per frame instead of 112: same merge code, 4x shorter sequences, so
        # the toy trains on CPU with VISA's 8-12 reference frames. The full configs keep 64 + 32 + 16.
        cluster_nums=(16, 8, 4),
    ),
    "chatunivi-7b": _full_rung("chatunivi-7b", _LLAMA_7B),
    "chatunivi-13b": _full_rung("chatunivi-13b", _LLAMA_13B),
}


def get_config(name: str | VisaConfig, **overrides: object) -> VisaConfig:
    """Look up a registered config (and optionally change some fields).

    Arguments:
      name (str | VisaConfig): "toy", "chatunivi-7b", "chatunivi-13b", or a config (returned as is).
      **overrides: fields to replace, e.g. ``cluster_nums=(32, 16, 8)``.
    Returns:
      VisaConfig
    """
    if isinstance(name, VisaConfig):
        config = name
    elif name in CONFIGS:
        config = CONFIGS[name]
    else:
        raise KeyError(f"unknown VISA config {name!r}; choose one of {sorted(CONFIGS)}")
    return config.replace(**overrides) if overrides else config
