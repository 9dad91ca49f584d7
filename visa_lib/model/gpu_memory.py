"""How much memory a VISA model needs, computed from its config alone (no GPU, no weights).

``model_memory_report(config)`` counts the parameters of every component with closed formulas
(LLaMA decoder, CLIP vision transformer, SAM image encoder / prompt encoder / mask decoder,
projector, ``[SEG]`` head) and turns them into bytes for the chosen dtype and quantisation.
The formulas are checked in the tests against the real parameter counts of the toy model and of
7B/13B-, CLIP-L- and SAM-H-shaped modules instantiated on the ``meta`` device.

What the numbers cover: weights (and, for training, gradients and AdamW states of the trainable
parameters). Not covered: activations (they grow with frames x 112 tokens; gradient checkpointing
cuts them), the CUDA context (~0.5 GB) and allocator fragmentation.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from visa_lib.model.configs import VISA_LORA, LoraSettings, VisaConfig, get_config

_BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0}
#: bitsandbytes LLM.int8: one int8 per weight plus one fp32 scale per output row (ignored: < 0.1%).
INT8_BYTES = 1.0
#: bitsandbytes NF4 with double quantisation: 4 bits + an 8-bit absmax per 64 weights + an fp32
#: scale per 256 blocks.
NF4_BYTES = 0.5 + 1.0 / 64 + 4.0 / (64 * 256)
#: AdamW keeps two fp32 moments per trainable parameter.
ADAM_STATE_BYTES = 8.0


# ----------------------------------------------------------------------------------------------
# Parameter counts by closed formula
# ----------------------------------------------------------------------------------------------


def llama_parameter_counts(
    vocab_size: int,
    hidden_size: int,
    intermediate_size: int,
    num_hidden_layers: int,
    num_attention_heads: int,
    num_key_value_heads: int,
    tie_word_embeddings: bool = False,
) -> dict[str, int]:
    """Parameters of a ``LlamaForCausalLM`` (no biases; RMSNorm has one weight vector).

    Returns:
      dict with "embed_tokens", "decoder_linear" (q, k, v, o, gate, up, down of all layers),
      "norms" (2 per layer + final) and "lm_head".
    """
    h = hidden_size
    kv = h // num_attention_heads * num_key_value_heads
    per_layer_linear = 2 * h * h + 2 * h * kv + 3 * h * intermediate_size
    return {
        "embed_tokens": vocab_size * h,
        "decoder_linear": num_hidden_layers * per_layer_linear,
        "norms": (2 * num_hidden_layers + 1) * h,
        "lm_head": 0 if tie_word_embeddings else vocab_size * h,
    }


def clip_vision_parameter_count(
    hidden_size: int, intermediate_size: int, num_hidden_layers: int, image_size: int, patch_size: int
) -> int:
    """Parameters of a ``CLIPVisionModel`` (embeddings, pre-LN, encoder layers, post-LN)."""
    c = hidden_size
    tokens = (image_size // patch_size) ** 2 + 1
    embeddings = c + 3 * patch_size * patch_size * c + tokens * c
    layer = (
        4 * (c * c + c)
        + 2 * 2 * c
        + (c * intermediate_size + intermediate_size)
        + (intermediate_size * c + c)
    )
    return embeddings + 2 * c + num_hidden_layers * layer + 2 * c


def sam_parameter_counts(spec) -> dict[str, int]:
    """Parameters of a ``segment_anything`` SAM built from a ``visa_lib.model.sam.SamSpec``.

    Returns:
      dict with "image_encoder", "prompt_encoder", "mask_decoder".
    """
    e, d = spec.encoder_embed_dim, spec.prompt_embed_dim
    grid = spec.img_size // spec.patch_size
    head_dim = e // spec.encoder_num_heads
    encoder = 3 * spec.patch_size**2 * e + e + grid * grid * e
    for i in range(spec.encoder_depth):
        size = grid if (i in spec.encoder_global_attn_indexes or spec.window_size == 0) else spec.window_size
        rel_pos = 2 * (2 * size - 1) * head_dim
        encoder += (
            2 * e
            + (e * 3 * e + 3 * e)
            + (e * e + e)
            + rel_pos
            + 2 * e
            + (e * 4 * e + 4 * e)
            + (4 * e * e + e)
        )
    encoder += e * d + 2 * d + d * d * 9 + 2 * d  # neck: 1x1 conv, LN2d, 3x3 conv, LN2d (convs without bias)

    m = spec.mask_in_chans
    prompt = 4 * d + d + d  # point embeddings, not-a-point, no-mask
    prompt += (m // 4) * 4 + m // 4 + 2 * (m // 4) + (m // 4) * m * 4 + m + 2 * m + m * d + d

    def attention(downsample: int) -> int:
        inner = d // downsample
        return 3 * (d * inner + inner) + inner * d + d

    mlp = spec.decoder_mlp_dim
    block = attention(1) + attention(2) + attention(2) + 4 * 2 * d + (d * mlp + mlp) + (mlp * d + d)
    masks = spec.num_multimask_outputs + 1
    decoder = spec.decoder_depth * block + attention(2) + 2 * d
    decoder += d + masks * d  # iou token, mask tokens
    decoder += d * (d // 4) * 4 + d // 4 + 2 * (d // 4) + (d // 4) * (d // 8) * 4 + d // 8  # upscaling
    decoder += masks * ((d * d + d) * 2 + d * (d // 8) + d // 8)  # hypernetwork MLPs
    hid = spec.iou_head_hidden_dim
    decoder += d * hid + hid + hid * hid + hid + hid * masks + masks
    return {"image_encoder": encoder, "prompt_encoder": prompt, "mask_decoder": decoder}


def _vision_config(config: VisaConfig):
    from visa_lib.model.vision import VISION_CONFIGS

    if config.vision_tower not in VISION_CONFIGS:
        raise ValueError(
            f"unknown vision tower {config.vision_tower!r}; choose one of {sorted(VISION_CONFIGS)}"
        )
    return VISION_CONFIGS[config.vision_tower]()


def parameter_counts(config: str | VisaConfig, vocab_size: int | None = None) -> dict[str, int]:
    """Parameters per component of the model ``build_visa(config)`` builds, by formula.

    Arguments:
      config (str | VisaConfig): a registered name or a config.
      vocab_size (int | None): rows of the embeddings INCLUDING ``[SEG]``; default
        ``config.llm.vocab_size + 1`` (the toy model uses its tokenizer's length instead).
    Returns:
      dict[str, int]: "llm.embed_tokens", "llm.decoder_linear", "llm.norms", "llm.lm_head",
      "vision_tower", "projector", "seg_head", "sam.image_encoder", "sam.prompt_encoder",
      "sam.mask_decoder".
    """
    from visa_lib.model.sam import SAM_SPECS

    config = get_config(config)
    dims = config.llm
    vocab = vocab_size if vocab_size is not None else dims.vocab_size + 1
    counts = {
        f"llm.{k}": v
        for k, v in llama_parameter_counts(
            vocab,
            dims.hidden_size,
            dims.intermediate_size,
            dims.num_hidden_layers,
            dims.num_attention_heads,
            dims.num_key_value_heads,
            dims.tie_word_embeddings,
        ).items()
    }
    vision = _vision_config(config)
    counts["vision_tower"] = clip_vision_parameter_count(
        vision.hidden_size,
        vision.intermediate_size,
        vision.num_hidden_layers,
        vision.image_size,
        vision.patch_size,
    )
    h, d = dims.hidden_size, config.prompt_dim
    counts["projector"] = vision.hidden_size * h + h
    counts["seg_head"] = h * h + h + h * d + d
    counts.update({f"sam.{k}": v for k, v in sam_parameter_counts(SAM_SPECS[config.sam]).items()})
    return counts


def measured_parameter_counts(model: nn.Module) -> dict[str, int]:
    """The same breakdown as :func:`parameter_counts`, counted on a built ``VisaModel``."""
    llm = model.causal_lm
    layers = llm.model.layers
    norms = sum(p.numel() for n, p in llm.named_parameters() if "norm" in n)
    decoder_linear = sum(p.numel() for n, p in layers.named_parameters() if "norm" not in n)
    lm_head = llm.lm_head.weight
    embed = llm.get_input_embeddings().weight
    return {
        "llm.embed_tokens": embed.numel(),
        "llm.decoder_linear": decoder_linear,
        "llm.norms": norms,
        "llm.lm_head": 0 if lm_head is embed else lm_head.numel(),
        "vision_tower": sum(p.numel() for p in model.vision_tower.parameters()),
        "projector": sum(p.numel() for p in model.projector.parameters()),
        "seg_head": sum(p.numel() for p in model.seg_head.parameters()),
        "sam.image_encoder": sum(p.numel() for p in model.sam.image_encoder.parameters()),
        "sam.prompt_encoder": sum(p.numel() for p in model.sam.prompt_encoder.parameters()),
        "sam.mask_decoder": sum(p.numel() for p in model.sam.mask_decoder.parameters()),
    }


# ----------------------------------------------------------------------------------------------
# Bytes
# ----------------------------------------------------------------------------------------------


@dataclass
class MemoryRow:
    """One component: its parameters, how they are stored, and the bytes that takes."""

    component: str
    params: int
    storage: str
    bytes: float


@dataclass
class MemoryReport:
    """Parameter memory of a config, per component, plus the extra memory of VISA training.

    Attributes:
      config (str): config name.
      rows (list[MemoryRow]): one per component.
      trainable_params (int): parameters VISA's recipe trains (LoRA q/v, embed_tokens, lm_head,
        mask decoder, ``[SEG]`` head).
      training_extra_bytes (float): their gradients (in the model dtype) and AdamW moments (fp32).
    """

    config: str
    rows: list[MemoryRow]
    trainable_params: int
    training_extra_bytes: float

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_bytes(self) -> float:
        return sum(r.bytes for r in self.rows)

    def gib(self, component: str | None = None) -> float:
        """GiB of one component (or the total when None)."""
        if component is None:
            return self.total_bytes / 2**30
        return sum(r.bytes for r in self.rows if r.component == component) / 2**30

    def to_text(self) -> str:
        """A plain-text table."""
        lines = [f"{'component':<22}{'params':>16}  {'storage':<10}{'GiB':>9}"]
        for r in self.rows:
            lines.append(f"{r.component:<22}{r.params:>16,}  {r.storage:<10}{r.bytes / 2**30:>9.3f}")
        lines.append(f"{'total (weights)':<22}{self.total_params:>16,}  {'':<10}{self.gib():>9.3f}")
        extra = self.training_extra_bytes / 2**30
        lines.append(f"{'+ training (LoRA)':<22}{self.trainable_params:>16,}  {'grad+adam':<10}{extra:>9.3f}")
        return "\n".join(lines)


def lora_parameter_count(config: VisaConfig, lora: LoraSettings = VISA_LORA) -> int:
    """LoRA adapter parameters: ``r * (in + out)`` for every targeted layer (VISA: q/v projections)."""
    dims = config.llm
    kv = dims.hidden_size // dims.num_attention_heads * dims.num_key_value_heads
    shapes = {
        "q_proj": (dims.hidden_size, dims.hidden_size),
        "v_proj": (dims.hidden_size, kv),
        "k_proj": (dims.hidden_size, kv),
        "o_proj": (dims.hidden_size, dims.hidden_size),
    }
    per_layer = sum(lora.r * sum(shapes[t]) for t in lora.targets if t in shapes)
    return dims.num_hidden_layers * per_layer


def model_memory_report(
    config: str | VisaConfig,
    vocab_size: int | None = None,
    *,
    dtype: str | None = None,
    load_in_8bit: bool = False,
    load_in_4bit: bool = False,
    lora: LoraSettings = VISA_LORA,
) -> MemoryReport:
    """Parameter memory per component of ``build_visa(config, ...)``, from the config alone.

    Storage follows ``build_visa``: every part in ``dtype`` (SAM included, as VISA runs it); with
    8/4-bit loading only the LLM's decoder linear layers are quantised (embeddings, norms, lm_head
    stay in bf16).

    Arguments:
      config (str | VisaConfig): a registered name or a config.
      vocab_size (int | None): embedding rows including ``[SEG]`` (default ``llm.vocab_size + 1``).
      dtype (str | None): as ``build_visa(dtype=...)``; None: "float32" for the toy, "bfloat16" for
        the full rung (what ``build_visa`` picks for a checkpoint folder).
      load_in_8bit (bool), load_in_4bit (bool): as in ``build_visa``.
      lora (LoraSettings): the adapters counted as trainable.
    Returns:
      MemoryReport (``.to_text()`` prints a table).
    """
    config = get_config(config)
    if dtype is None:
        dtype = "float32" if config.tokenizer == "toy" else "bfloat16"
    counts = parameter_counts(config, vocab_size)
    dtype_bytes = _BYTES[dtype]
    quantised = load_in_8bit or load_in_4bit
    rows = []
    for component, params in counts.items():
        storage, per = dtype, dtype_bytes
        if quantised and not component.startswith("sam."):
            if component == "llm.decoder_linear":
                storage, per = ("int8", INT8_BYTES) if load_in_8bit else ("nf4", NF4_BYTES)
            elif component.startswith("llm."):
                storage, per = "bfloat16", 2.0
        rows.append(MemoryRow(component, params, storage, params * per))
    trainable = (
        lora_parameter_count(config, lora)
        + counts["llm.embed_tokens"]
        + counts["llm.lm_head"]
        + counts["sam.mask_decoder"]
        + counts["seg_head"]
    )
    grad_bytes = 4.0 if dtype == "float32" else 2.0
    return MemoryReport(config.name, rows, trainable, trainable * (grad_bytes + ADAM_STATE_BYTES))
