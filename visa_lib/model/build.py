"""``build_visa(name, ...)``: assemble a VISA model for either rung, from a config name and weights.

Toy rung: the toy tokenizer and a tiny LLaMA, the shipped toy CLIP and SAM, and the shipped
``toy_visa.safetensors``. Full rung: Chat-UniVi or merged-VISA checkpoint folders (strict loading,
optional 8/4-bit quantisation), CLIP ViT-L/14 and SAM ViT-H. The model itself is
:class:`visa_lib.model.visa.VisaModel`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from segment_anything.modeling import Sam
from torch import nn

from visa_lib.model import sam as sam_glue
from visa_lib.model.configs import VisaConfig
from visa_lib.model.visa import TokenMerger, VisaModel, build_seg_head
from visa_lib.paths import TOY_WEIGHTS

#: The shipped toy VISA weights (reproduced by ``python scripts/train_toy_visa.py``).
TOY_VISA_WEIGHTS = TOY_WEIGHTS / "toy_visa.safetensors"

def _require_bitsandbytes(config: VisaConfig):  # -> transformers.BitsAndBytesConfig
    """The quantisation config for 8/4-bit loading; a clear error when bitsandbytes is missing."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        mode = "load_in_8bit" if config.load_in_8bit else "load_in_4bit"
        raise ImportError(
            f"{mode}=True needs the optional package bitsandbytes (and a CUDA GPU): "
            "pip install visa_lib[full]   -- or load in bfloat16 instead (dtype='bfloat16')"
        )
    from transformers import BitsAndBytesConfig

    # Only the LLM's decoder layers are quantised; the head, projector, SAM and CLIP stay in bf16/fp32.
    skip = ["lm_head", "mm_projector", "visual_model", "text_hidden_fcs", "vision_tower"]
    if config.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        llm_int8_skip_modules=skip,
    )


def llama_config_from_checkpoint(files, config: VisaConfig):  # -> transformers.LlamaConfig
    """The LLM config stored in a checkpoint folder (``config.json``), checked against ``config.llm``.

    Chat-UniVi's ``config.json`` says ``model_type: "ChatUniVi"``; its LLaMA fields are read directly.
    """
    from transformers import LlamaConfig

    raw = files.config()
    if raw is None:
        raise FileNotFoundError(f"{files.folder}: config.json is missing; it must come with the checkpoint")
    known = set(LlamaConfig().to_dict())
    llama = LlamaConfig(**{k: v for k, v in raw.items() if k in known and k != "model_type"})
    dims = config.llm
    for field in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
        if getattr(llama, field) != getattr(dims, field):
            raise ValueError(
                f"{files.folder}/config.json: {field} = {getattr(llama, field)}, but config {config.name!r} "
                f"expects {getattr(dims, field)}; pick the config that matches the checkpoint (7b / 13b)"
            )
    llama.use_cache = False
    return llama


def _llm_from_state(llama_config, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """A ``LlamaForCausalLM`` built on the meta device and filled with ``state`` (no random init, no copy)."""
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        llm = LlamaForCausalLM(llama_config)
    from visa_lib.weights import load_strict

    hint = "Pick the config that matches the checkpoint (7b / 13b)"
    load_strict(llm, state, f"{source}: LLM", hint, assign=True)
    # Non-persistent buffers (RoPE frequencies) are not in checkpoints: rebuild them off the meta device.
    rotary = llm.model.rotary_emb
    llm.model.rotary_emb = type(rotary)(config=llama_config)
    return llm


def _load_full_llm(files, config: VisaConfig, kind: str):
    """The LLM of a Chat-UniVi / merged-VISA folder: strict key check, then bf16 or 8/4-bit loading."""
    from visa_lib.model.checkpoints import map_checkpoint_keys

    llama_config = llama_config_from_checkpoint(files, config)
    allowed = ("llm.", "projector.") if kind == "chatunivi" else ("llm.", "projector.", "sam.", "seg_head.")
    mapping = map_checkpoint_keys(files.keys(), str(files.path), allowed)
    llm_keys = {k: v[len("llm.") :] for k, v in mapping.items() if v.startswith("llm.")}
    if config.load_in_8bit or config.load_in_4bit:
        from transformers import LlamaForCausalLM

        quant = _require_bitsandbytes(config)
        with torch.device("meta"):
            expected = set(LlamaForCausalLM(llama_config).state_dict())
        if set(llm_keys.values()) != expected:
            from visa_lib.model.checkpoints import CheckpointKeyError, _fmt

            have = set(llm_keys.values())
            raise CheckpointKeyError(
                f"{files.path}: LLM missing keys {_fmt(expected - have)}, unexpected {_fmt(have - expected)}"
            )
        llm = LlamaForCausalLM.from_pretrained(
            str(files.folder),
            config=llama_config,
            quantization_config=quant,
            dtype=torch.bfloat16,
            device_map={"": 0},
            local_files_only=True,
        )
        return llm, mapping
    loaded = files.load(llm_keys)
    state = {llm_keys[k]: t.to(config.torch_dtype) for k, t in loaded.items()}
    return _llm_from_state(llama_config, state, str(files.path)), mapping


def build_visa(
    name: str | VisaConfig = "toy",
    *,
    checkpoint: str | Path | None = None,
    weights: str | Path | None = "default",
    vision_weights: str | Path | None = None,
    sam_checkpoint: str | Path | None = None,
    vision_tower: nn.Module | None = None,
    sam: Sam | None = None,
    pretrained: bool = True,
    device: str | torch.device = "cpu",
    seed: int = 0,
    check_trained: bool = True,
    **overrides,
) -> VisaModel:
    """Build a VISA model by config name; the same call on both rungs.

    Toy rung: ``build_visa("toy")`` -- tiny LLaMA from the toy tokenizer, shipped toy CLIP and SAM,
    and the shipped ``toy_visa.safetensors`` when it exists. Full rung:
    ``build_visa("chatunivi-7b", checkpoint=DIR, vision_weights=CLIP_DIR, sam_checkpoint=SAM_PTH)``
    with DIR a Chat-UniVi folder (fresh ``[SEG]`` head; SAM from ``sam_checkpoint``) or a merged
    VISA folder (everything but CLIP comes from it).

    Arguments:
      name (str | VisaConfig): "toy", "chatunivi-7b", "chatunivi-13b" or a config.
      checkpoint (str | Path | None): Hugging Face folder of Chat-UniVi or merged VISA (full rung).
      weights (str | Path | None): our own ``.safetensors``; "default" = the shipped toy weights
        (toy only, if present); None = none.
      vision_weights (str | Path | None): CLIP checkpoint (required on the full rung).
      sam_checkpoint (str | Path | None): SAM checkpoint (full rung from Chat-UniVi; toy default: shipped).
      vision_tower (nn.Module | None), sam (Sam | None): ready-built parts (override the two above).
      pretrained (bool): toy only; False gives random toy CLIP and SAM too.
      device (str | torch.device): where the model goes (quantised LLMs always sit on GPU 0).
      seed (int): seed of the random initialisations (LLM, projector, head).
      check_trained (bool): warn when the ``[SEG]`` head / mask decoder look untrained.
      **overrides: config fields, e.g. ``dtype="bfloat16"``, ``load_in_4bit=True``.
    Returns:
      VisaModel in eval mode.
    """
    from transformers import LlamaForCausalLM

    from visa_lib.model import checkpoints as ckpt
    from visa_lib.model.configs import get_config
    from visa_lib.model.tokenizer import add_seg_token, build_toy_tokenizer, load_checkpoint_tokenizer
    from visa_lib.model.vision import build_vision_tower

    config = get_config(name, **overrides)
    torch.manual_seed(seed)
    if weights == "default":
        weights = TOY_VISA_WEIGHTS if (config.name == "toy" and checkpoint is None and pretrained) else None
        if weights is not None and not Path(weights).is_file():
            weights = None  # warn_if_untrained below tells the user the head is untrained

    # --- tokenizer and LLM
    mapping: dict[str, str] = {}
    files = None
    if checkpoint is None:
        if config.load_in_8bit or config.load_in_4bit:
            _require_bitsandbytes(config)
            raise ValueError("8/4-bit loading needs a checkpoint folder (checkpoint=...)")
        vocab = ckpt.read_visa_weights_metadata(weights).get("vocab") if weights is not None else None
        if config.tokenizer != "toy":
            raise ValueError(f"build_visa({config.name!r}): give checkpoint= the Chat-UniVi or VISA folder")
        tokenizer = build_toy_tokenizer(vocab)
        ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
        llama_config = config.llama_config(vocab_size=len(tokenizer))
        llama_config.update({**ids, "pad_token_id": tokenizer.pad_token_id})
        llm = LlamaForCausalLM(llama_config)
        kind = "scratch"
    else:
        files = ckpt.CheckpointFiles(checkpoint)
        kind = ckpt.classify_checkpoint(files.keys())
        tokenizer = load_checkpoint_tokenizer(files.folder)
        llm, mapping = _load_full_llm(files, config, kind)
    seg_token_id = add_seg_token(tokenizer)
    if llm.get_input_embeddings().num_embeddings < len(tokenizer):
        llm.resize_token_embeddings(len(tokenizer))  # Chat-UniVi: 32000 -> 32001 rows for [SEG]

    # --- vision tower and SAM
    if vision_tower is None:
        if config.vision_tower == "toy" and not pretrained:
            from transformers import CLIPVisionModel

            from visa_lib.model.vision import VisionTower, toy_vision_config

            vision_tower = VisionTower(CLIPVisionModel(toy_vision_config()), name="toy")
        else:
            vision_tower = build_vision_tower(config.vision_tower, weights=vision_weights)
    if sam is None:
        if kind == "visa":
            sam = sam_glue.build_sam(config.sam, pretrained=False)  # filled from the checkpoint below
        else:
            sam = sam_glue.build_sam(config.sam, checkpoint=sam_checkpoint, pretrained=pretrained)

    if sam_glue.sam_prompt_dim(sam) != config.prompt_dim:
        raise ValueError(
            f"build_visa({config.name!r}): SAM prompt width {sam_glue.sam_prompt_dim(sam)} differs from "
            f"config.prompt_dim {config.prompt_dim}; use the SAM size the config names ({config.sam!r})"
        )
    hidden = llm.get_input_embeddings().embedding_dim
    projector = nn.Linear(vision_tower.hidden_size, hidden)
    seg_head = build_seg_head(hidden, sam_glue.sam_prompt_dim(sam))
    merger = TokenMerger(config.cluster_nums, config.cluster_ks, seed=seed)
    model = VisaModel(llm, vision_tower, merger, projector, seg_head, sam, tokenizer, seg_token_id, config)

    # --- the remaining weights
    if files is not None:
        rest = {k: v for k, v in mapping.items() if not v.startswith("llm.")}
        components = ("projector",) if kind == "chatunivi" else ("projector", "sam", "seg_head")
        state = {rest[k]: t for k, t in files.load(rest).items()}
        ckpt.load_module_state(model, state, components, str(files.path), checkpoint_names=True)
    if weights is not None:
        ckpt.load_visa_weights(model, weights, check_trained=False)
    if check_trained:
        ckpt.warn_if_untrained(model)

    if not (config.load_in_8bit or config.load_in_4bit):
        llm.to(config.torch_dtype)
    projector.to(config.torch_dtype)
    seg_head.to(config.torch_dtype)
    vision_tower.to(config.torch_dtype)
    if config.gradient_checkpointing:
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if not (config.load_in_8bit or config.load_in_4bit):
        model.to(device)
    else:
        for part in (vision_tower, projector, seg_head, sam):
            part.to(llm.device)
    return model.eval()
