"""Which parameters VISA trains (docs/training_recipe.md), as one function.

Recipe (``mode="lora"``): LoRA (r 8, alpha 16, dropout 0.05) on every ``q_proj``/``v_proj`` of the
LLM; ``embed_tokens`` and ``lm_head`` (they hold the new ``[SEG]`` row), SAM's mask decoder and the
``[SEG]`` head fully trained; the vision tower, the projector and SAM's image and prompt encoders
frozen. ``mode="full"`` trains the whole LLM instead of adapters -- what the toy rung uses, because
its tiny LLM starts from random weights (there is no pretrained toy Chat-UniVi to adapt).
"""

from __future__ import annotations

from collections import Counter

from torch import nn

from visa_lib.model.configs import VISA_LORA, LoraSettings
from visa_lib.model.visa import VisaModel, unwrap_causal_lm

#: Parameter-name fragments that are always fully trained.
ALWAYS_TRAINED: tuple[str, ...] = ("embed_tokens", "lm_head")


def lora_target_names(llm: nn.Module, targets: tuple[str, ...] = ("q_proj", "v_proj")) -> list[str]:
    """Full names of the ``nn.Linear`` layers of the LLM whose name ends with one of ``targets``."""
    return sorted(
        name
        for name, module in llm.named_modules()
        if isinstance(module, nn.Linear) and name.endswith(targets)
    )


def prepare_for_training(
    model: VisaModel, mode: str = "lora", train_projector: bool = False, lora: LoraSettings = VISA_LORA
) -> dict[str, int]:
    """Freeze, wrap and unfreeze ``model`` in place for VISA training; return trainable counts per part.

    Arguments:
      model (VisaModel): a freshly loaded model (LLM not yet PEFT-wrapped).
      mode (str): "lora" (VISA's recipe, needs ``peft``) or "full" (train every LLM weight).
      train_projector (bool): also train the projector (frozen in VISA; useful for a toy LLM from scratch).
      lora (LoraSettings): rank, alpha, dropout and target layers of the adapters (VISA's by default).
    Returns:
      dict[str, int]: trainable parameter counts by top-level part ("llm", "seg_head", "sam", ...).
    """
    if mode not in ("lora", "full"):
        raise ValueError(f"prepare_for_training: mode must be 'lora' or 'full', got {mode!r}")
    if model.llm is not model.causal_lm:
        raise RuntimeError("prepare_for_training: the LLM is already PEFT-wrapped; call it once per model")
    model.requires_grad_(False)
    if mode == "lora":
        try:
            from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        except ImportError as err:  # pragma: no cover - peft is in the training extra
            raise ImportError("LoRA training needs peft: pip install visa_lib[training]") from err
        llm = model.causal_lm
        quantized = getattr(llm, "is_loaded_in_4bit", False) or getattr(llm, "is_loaded_in_8bit", False)
        if quantized:  # QLoRA: peft's k-bit preparation (fp32 norms, input grads, checkpointing kept)
            train_dtype = model.seg_head[0].weight.dtype  # the run dtype build_visa cast the heads to
            model.llm = prepare_model_for_kbit_training(
                model.llm,
                use_gradient_checkpointing=any(
                    getattr(m, "gradient_checkpointing", False) is True for m in llm.modules()
                ),
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        peft_config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            bias="none",
            task_type="CAUSAL_LM",
            target_modules=lora_target_names(model.llm, lora.targets),
        )
        model.llm = get_peft_model(model.llm, peft_config)
        if quantized:
            # prepare_model_for_kbit_training upcasts every unquantised weight to fp32; the [SEG]
            # rows and lm_head (2 x 131M numbers on 7B) train in the run's dtype instead.
            for name, module in model.llm.named_modules():
                if name.endswith(ALWAYS_TRAINED):
                    module.to(train_dtype)
    else:
        model.llm.requires_grad_(True)
    for name, param in model.llm.named_parameters():
        if any(part in name for part in ALWAYS_TRAINED):
            param.requires_grad_(True)
    model.sam.mask_decoder.requires_grad_(True)
    model.seg_head.requires_grad_(True)
    model.projector.requires_grad_(train_projector)
    if any(getattr(m, "gradient_checkpointing", False) is True for m in model.causal_lm.modules()):
        # Checkpointed blocks need an input that requires grad, else no gradient reaches the adapters.
        model.causal_lm.enable_input_require_grads()
    model.train()
    return trainable_counts(model)


def trainable_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters per top-level child of ``model``."""
    counts: Counter[str] = Counter()
    for name, param in model.named_parameters():
        if param.requires_grad:
            counts[name.split(".")[0]] += param.numel()
    return dict(counts)


def merge_lora(model: VisaModel) -> VisaModel:
    """Fold LoRA adapters into the LLM weights (as VISA's merge script does) and drop the wrapper."""
    if model.llm is not model.causal_lm:
        model.llm = model.llm.merge_and_unload()
    model.llm = unwrap_causal_lm(model.llm)
    return model
