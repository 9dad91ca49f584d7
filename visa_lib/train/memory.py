"""GPU memory of a VISA training run per GPU: weights, gradients, optimizer states, activations.

Built on :mod:`visa_lib.model.gpu_memory` (parameter counts per component by formula, weight bytes
per storage type); this module adds what training holds on top, for the three set-ups of
``docs/training.md``:

* ``"lora"`` -- bf16 LoRA on one GPU (or plain DDP: every GPU holds the same): the model in bf16
  (SAM included, as ``build_visa`` loads a checkpoint folder), peft's adapters in fp32; torch AdamW
  keeps two moments in each parameter's dtype.
* ``"qlora"`` -- the same with the LLM's decoder linear layers in 4-bit NF4 (bitsandbytes); peft's
  k-bit preparation upcasts the LLM norms to fp32.
* ``"zero2"`` -- DeepSpeed ZeRO-2 in bf16 on N GPUs (VISA's recipe): DeepSpeed casts the whole model
  to bf16 (SAM and adapters too) and keeps an fp32 master copy and two fp32 AdamW moments of the
  trainable parameters, sharded over the N GPUs; gradients are sharded too, plus the reduce buckets.

The trainable set is VISA's: LoRA on q/v, the whole ``embed_tokens`` and ``lm_head`` (they hold the
``[SEG]`` row), the SAM mask decoder and the ``[SEG]`` head. Weight, gradient and optimizer bytes are
exact for a given set-up (a test checks them against a real optimizer step of the toy model);
activations are an estimate (see :func:`activation_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass

from visa_lib.model.configs import VISA_LORA, VisaConfig, get_config
from visa_lib.model.gpu_memory import lora_parameter_count, model_memory_report, parameter_counts
from visa_lib.model.sam import SAM_SPECS

SETUPS = ("lora", "qlora", "zero2")
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
#: VISA's DeepSpeed reduce bucket (elements) -- also in configs/accelerate/zero2.json.
ZERO2_REDUCE_BUCKET = 500_000_000
#: Text tokens of one conversation around the visual tokens (system prompt, question, answer).
TEXT_TOKENS = 96
#: Trainable but never given a gradient: VISA's loss does not use SAM's IoU prediction, so torch
#: allocates no gradient and AdamW no state for it (DeepSpeed's flat buffers still hold it).
NO_GRADIENT = ("sam.iou_prediction_head",)


@dataclass
class TrainingMemory:
    """Bytes per GPU of one set-up (``total`` is their sum; no CUDA context or fragmentation)."""

    config: str
    setup: str
    num_gpus: int
    weights: float
    gradients: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations

    def gib(self) -> dict[str, float]:
        parts = ("weights", "gradients", "optimizer", "activations", "total")
        return {k: getattr(self, k) / 2**30 for k in parts}


def _run_dtype(config: VisaConfig, dtype: str | None) -> str:
    """``build_visa``'s choice: fp32 for the toy, bf16 for a full-rung checkpoint folder."""
    return dtype or ("float32" if config.tokenizer == "toy" else "bfloat16")


def trainable_parameters(
    config: VisaConfig, dtype: str | None = None, vocab_size: int | None = None
) -> dict[str, tuple[int, str]]:
    """VISA's trainable parts and the dtype each trains in (bf16 LoRA / QLoRA, before DeepSpeed).

    Returns:
      dict[str, (int, str)]: "lora", "llm.embed_tokens", "llm.lm_head", "seg_head",
      "sam.mask_decoder" (without its IoU head), "sam.iou_prediction_head" -> (parameters, dtype).
      ``dtype``: the model's (None: ``build_visa``'s default for the config).
    """
    dtype = _run_dtype(config, dtype)
    counts = parameter_counts(config, vocab_size)
    spec = SAM_SPECS[config.sam]
    d, hid, masks = spec.prompt_embed_dim, spec.iou_head_hidden_dim, spec.num_multimask_outputs + 1
    iou_head = d * hid + hid + hid * hid + hid + hid * masks + masks
    return {
        "lora": (lora_parameter_count(config, VISA_LORA), "float32"),  # peft keeps adapters in fp32
        "llm.embed_tokens": (counts["llm.embed_tokens"], dtype),
        "llm.lm_head": (counts["llm.lm_head"], dtype),
        "seg_head": (counts["seg_head"], dtype),
        "sam.mask_decoder": (counts["sam.mask_decoder"] - iou_head, dtype),
        "sam.iou_prediction_head": (iou_head, dtype),
    }


def activation_bytes(
    config: VisaConfig,
    frames: int = 12,
    expressions: int = 3,
    micro_batch: int = 1,
    gradient_checkpointing: bool = True,
) -> float:
    """Estimated activation memory of one micro-batch (bf16 compute, flash / SDPA attention).

    Each expression is one conversation of ``(frames + 1) x tokens_per_frame + TEXT_TOKENS``
    tokens; a micro-batch runs ``micro_batch x expressions`` of them. Per LLaMA layer and token
    the backward keeps about ``30 h + 8 i`` bytes (norm inputs in fp32, q/k/v and rotated q/k,
    attention output, the four SwiGLU tensors, LoRA inputs); with gradient checkpointing only
    each layer's input (``2 h`` bytes) is kept and one layer is recomputed at a time. The logits
    take ``10 V`` bytes per token (bf16 logits, their fp32 copy and log-softmax for the CE).
    The frozen vision tower and SAM image encoder run without a graph; the mask decoder's
    activations (tens of MB) are left out.
    """
    dims = config.llm
    tokens = micro_batch * expressions * ((frames + 1) * config.tokens_per_frame + TEXT_TOKENS)
    per_layer = tokens * (30 * dims.hidden_size + 8 * dims.intermediate_size)
    if gradient_checkpointing:
        layers = dims.num_hidden_layers * tokens * 2 * dims.hidden_size + per_layer
    else:
        layers = dims.num_hidden_layers * per_layer
    vocab = dims.vocab_size + 1
    return float(layers + tokens * 10 * vocab)


def training_memory(
    config: str | VisaConfig,
    setup: str = "lora",
    num_gpus: int = 1,
    dtype: str | None = None,
    vocab_size: int | None = None,
    reduce_bucket: int = ZERO2_REDUCE_BUCKET,
    **activation_args,
) -> TrainingMemory:
    """Per-GPU memory of training ``config`` with ``setup`` ("lora", "qlora" or "zero2").

    Arguments:
      config (str | VisaConfig): "chatunivi-7b", "chatunivi-13b", "toy" or a config (its ``dtype``
        is the model's; the full-rung configs are bf16).
      setup (str): see the module docstring.
      num_gpus (int): GPUs the ZeRO-2 states are sharded over (ignored by "lora" / "qlora").
      dtype (str | None): the model's dtype as in ``build_visa`` (None: fp32 toy, bf16 full rung).
      vocab_size (int | None): embedding rows including ``[SEG]`` (default from the config).
      reduce_bucket (int): DeepSpeed reduce bucket in elements ("zero2": held in bf16, twice with
        ``overlap_comm``).
      **activation_args: ``frames``, ``expressions``, ``micro_batch``, ``gradient_checkpointing``
        of :func:`activation_bytes`.
    Returns:
      TrainingMemory
    """
    if setup not in SETUPS:
        raise ValueError(f"setup must be one of {SETUPS}, got {setup!r}")
    config = get_config(config)
    dtype = _run_dtype(config, dtype)
    trainable = trainable_parameters(config, dtype, vocab_size)
    activations = activation_bytes(config, **activation_args)
    lora = trainable["lora"][0]
    if setup == "zero2":
        total_params = sum(parameter_counts(config, vocab_size).values()) + lora
        count = sum(n for n, _ in trainable.values())
        weights = 2.0 * total_params  # DeepSpeed bf16: every weight in bf16
        gradients = 2.0 * count / num_gpus + 2 * 2.0 * reduce_bucket
        optimizer = 12.0 * count / num_gpus  # fp32 master copy + two fp32 moments, sharded
        return TrainingMemory(config.name, setup, num_gpus, weights, gradients, optimizer, activations)
    report = model_memory_report(config, vocab_size, dtype=dtype, load_in_4bit=setup == "qlora")
    weights = report.total_bytes + 4.0 * lora
    if setup == "qlora":  # prepare_model_for_kbit_training: unquantised LLM norms -> fp32
        norms = parameter_counts(config, vocab_size)["llm.norms"]
        weights += (4 - _BYTES[dtype]) * norms
    gradients = float(sum(n * _BYTES[dtype] for k, (n, dtype) in trainable.items() if k not in NO_GRADIENT))
    optimizer = 2.0 * gradients  # torch AdamW: exp_avg and exp_avg_sq in the parameter's dtype
    return TrainingMemory(config.name, setup, 1, weights, gradients, optimizer, activations)


def memory_table(configs=("chatunivi-7b", "chatunivi-13b"), num_gpus: int = 8, **activation_args) -> str:
    """A Markdown table (GiB per GPU) of every set-up of every config."""
    lines = [
        "| config | set-up | GPUs | weights | gradients | optimizer | activations | total |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {"lora": "bf16 LoRA", "qlora": "4-bit QLoRA", "zero2": "ZeRO-2 bf16"}
    for name in configs:
        for setup in SETUPS:
            memory = training_memory(name, setup, num_gpus if setup == "zero2" else 1, **activation_args)
            g = memory.gib()
            cells = " | ".join(
                f"{g[k]:.2f}" for k in ("weights", "gradients", "optimizer", "activations", "total")
            )
            lines.append(f"| {name} | {names[setup]} | {memory.num_gpus} | {cells} |")
    return "\n".join(lines)
