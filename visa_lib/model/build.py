"""``build_visa(name, ...)``: assemble a VISA model for either rung, from a config name and weights.

The builder is four short steps, each a function of its own (like ``segment_anything``'s builders)::

    source = find_visa_weights(config, weights)         what the weights are (folder, our file, none)
    tokenizer, llm = build_llm(config, source, ...)     LLM and tokenizer (full rung: on the meta device)
    build_clip(...), build_sam_for(...)                 the towers, from their own files
    model = assemble_visa(...)                          VisaModel from its parts
    load_visa_weights_into(model, source, ...)          the public loaders of visa_lib.model.checkpoints

Toy rung: the toy tokenizer and a tiny LLaMA, the shipped toy CLIP and SAM, and the shipped
``toy_visa.safetensors``. Full rung: a Chat-UniVi or merged-VISA folder as published
(``docs/checkpoints.md``), CLIP ViT-L/14 and SAM ViT-H. Runtime knobs -- dtype, 8/4-bit loading,
gradient checkpointing, the merge's dtype -- are arguments here, not part of the architecture config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from segment_anything.modeling import Sam
from torch import nn

from visa_lib.model import checkpoints as ckpt
from visa_lib.model import sam as sam_glue
from visa_lib.model.configs import CONFIGS, DTYPES, VisaConfig, get_config
from visa_lib.model.visa import TokenMerger, VisaModel, build_seg_head
from visa_lib.paths import TOY_WEIGHTS

#: The shipped toy VISA weights (reproduced by ``python scripts/train_toy_visa.py``).
TOY_VISA_WEIGHTS = TOY_WEIGHTS / "toy_visa.safetensors"
#: ``model_type`` that Chat-UniVi and VISA write into ``config.json``.
CHATUNIVI_MODEL_TYPE = "ChatUniVi"
#: LLaMA fields read from a folder's ``config.json`` besides those of ``LlamaConfig().to_dict()``.
_ROPE_FIELDS = ("rope_theta", "rope_scaling")


@dataclass
class VisaWeights:
    """Where ``build_visa``'s weights come from.

    Attributes:
      kind (str): "scratch" (random), "ours" (our ``.safetensors``), "chatunivi" or "visa" (folders).
      folder (CheckpointFiles | None): the Chat-UniVi / merged-VISA folder, if any.
      files (list[Path]): our ``.safetensors`` files, loaded after the folder, in order.
    """

    kind: str
    folder: ckpt.CheckpointFiles | None = None
    files: list[Path] = field(default_factory=list)


def find_visa_weights(
    config: VisaConfig, weights: str | Path | Sequence[str | Path] | None, pretrained: bool = True
) -> VisaWeights:
    """Resolve ``build_visa``'s ``weights`` argument.

    Arguments:
      config (VisaConfig): the architecture.
      weights: "default" (the shipped toy weights, toy rung only), None (random), a Chat-UniVi or
        merged-VISA folder, one of our ``.safetensors`` files, or a folder followed by our files.
      pretrained (bool): False turns "default" into None.
    """
    if isinstance(weights, str) and weights == "default":
        use_toy = config.name == "toy" and pretrained and TOY_VISA_WEIGHTS.is_file()
        weights = TOY_VISA_WEIGHTS if use_toy else None  # warn_if_untrained tells the user otherwise
    if weights is None:
        if config.tokenizer != "toy":
            raise ValueError(
                f"build_visa({config.name!r}): pass weights= the Chat-UniVi folder (Chat-UniVi/Chat-UniVi) "
                "or a merged VISA folder; the full rung has no random or shipped weights"
            )
        return VisaWeights("scratch")
    items = [weights] if isinstance(weights, (str, Path)) else list(weights)
    paths = [Path(p) for p in items]
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"weights {path}: no such file or folder")
    folder = ckpt.CheckpointFiles(paths[0]) if paths[0].is_dir() else None
    files = paths[1:] if folder is not None else paths
    if any(p.is_dir() for p in files):
        raise ValueError(f"weights {files}: only the first entry may be a folder; the rest are .safetensors")
    if folder is None:
        return VisaWeights("ours", files=files)
    return VisaWeights(ckpt.classify_checkpoint(folder.keys()), folder=folder, files=files)


# ----------------------------------------------------------------------------------------------
# Step 1: the LLM and its tokenizer
# ----------------------------------------------------------------------------------------------


def _size_hint(llama) -> str:
    """Which registered config has the LLM dims of ``llama`` (a ``LlamaConfig``), as advice."""
    fields = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    matches = [n for n, c in CONFIGS.items() if all(getattr(c.llm, f) == getattr(llama, f) for f in fields)]
    if matches:
        return f"build it with the config {matches[0]!r}"
    dims = ", ".join(f"{f}={getattr(llama, f)}" for f in fields)
    return f"no registered config has {dims}; pass a VisaConfig whose LlmDims match"


def read_folder_config(folder: ckpt.CheckpointFiles, config: VisaConfig):  # -> transformers.LlamaConfig
    """The LLM config in a Chat-UniVi / VISA ``config.json``, checked against ``config``.

    Checks ``model_type`` (``"ChatUniVi"``), the LLM dims, ``mm_hidden_size`` (the vision width)
    and the cluster counts ``config.spatial_cluster_rate0..2`` when the file has them.
    """
    from transformers import LlamaConfig

    raw = folder.config()
    where = f"{folder.folder}/config.json"
    if raw is None:
        raise FileNotFoundError(f"{where} is missing; it must come with the checkpoint")
    if raw.get("model_type") != CHATUNIVI_MODEL_TYPE:
        raise ValueError(
            f"{where}: model_type {raw.get('model_type')!r}, expected {CHATUNIVI_MODEL_TYPE!r}; point to a "
            "Chat-UniVi folder (Chat-UniVi/Chat-UniVi) or a merged VISA folder"
        )
    known = set(LlamaConfig().to_dict()) | set(_ROPE_FIELDS)
    fields = {k: v for k, v in raw.items() if k in known and k != "model_type"}
    if fields.get("rope_scaling") is None:
        fields.pop("rope_scaling", None)  # 4.31 writes null; newer transformers warn about the name
    llama = LlamaConfig(**fields)
    for name in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
        if getattr(llama, name) != getattr(config.llm, name):
            raise ValueError(
                f"{where}: {name} = {getattr(llama, name)}, but config {config.name!r} expects "
                f"{getattr(config.llm, name)}; {_size_hint(llama)}"
            )
    if "mm_hidden_size" in raw and raw["mm_hidden_size"] != config.vision_hidden_size:
        raise ValueError(
            f"{where}: mm_hidden_size = {raw['mm_hidden_size']} but config {config.name!r} has a "
            f"{config.vision_hidden_size}-wide vision tower; use the config the checkpoint was trained with"
        )
    clusters = raw.get("config") or {}
    rates = [clusters.get(f"spatial_cluster_rate{i}") for i in range(len(config.cluster_nums))]
    if all(r is not None for r in rates) and tuple(rates) != config.cluster_nums:
        raise ValueError(
            f"{where}: spatial cluster counts {tuple(rates)} differ from config {config.name!r}'s "
            f"{config.cluster_nums}; use the config the checkpoint was trained with"
        )
    llama.use_cache = False
    return llama


def _quantization(load_in_8bit: bool, load_in_4bit: bool):  # -> transformers.BitsAndBytesConfig | None
    """The bitsandbytes config for 8/4-bit loading; a clear error when bitsandbytes is missing."""
    if not (load_in_8bit or load_in_4bit):
        return None
    if load_in_8bit and load_in_4bit:
        raise ValueError("build_visa: choose load_in_8bit OR load_in_4bit, not both")
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        mode = "load_in_8bit" if load_in_8bit else "load_in_4bit"
        raise ImportError(
            f"{mode}=True needs the optional package bitsandbytes (and a CUDA GPU): "
            "pip install visa_lib[full]   -- or load in bfloat16 instead (dtype='bfloat16')"
        )
    from transformers import BitsAndBytesConfig

    # Only the LLM's decoder layers are quantised; the head, projector, SAM and CLIP stay in bf16.
    skip = ["lm_head", "mm_projector", "visual_model", "text_hidden_fcs", "vision_tower"]
    if load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        llm_int8_skip_modules=skip,
    )


def build_tokenizer(config: VisaConfig, source: VisaWeights):
    """The toy tokenizer (vocabulary from our weight file when there is one) or the folder's tokenizer."""
    from visa_lib.model.tokenizer import build_toy_tokenizer, load_checkpoint_tokenizer

    if source.folder is not None:
        return load_checkpoint_tokenizer(source.folder.folder)
    if config.tokenizer != "toy":
        raise ValueError(f"build_visa({config.name!r}): the tokenizer comes from a checkpoint folder")
    vocab = ckpt.read_visa_weights_metadata(source.files[0]).get("vocab") if source.files else None
    return build_toy_tokenizer(vocab)


def build_llm(config: VisaConfig, tokenizer, source: VisaWeights, quantization=None) -> nn.Module:
    """A ``LlamaForCausalLM`` with one embedding row per token of ``tokenizer``.

    From a folder: the folder's ``config.json`` sizes it, and it is created on the meta device (the
    loaders then assign the checkpoint's tensors: no random 7B initialisation, no copy); with
    ``quantization`` transformers loads it itself. Otherwise: random weights (toy rung).
    """
    from transformers import LlamaForCausalLM

    if source.folder is None:
        if quantization is not None:
            raise ValueError("8/4-bit loading needs a checkpoint folder (weights=FOLDER)")
        ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
        llama = config.llama_config(vocab_size=len(tokenizer))
        llama.update({**ids, "pad_token_id": tokenizer.pad_token_id})
        return LlamaForCausalLM(llama)
    llama = read_folder_config(source.folder, config)
    if quantization is not None:
        llm = LlamaForCausalLM.from_pretrained(
            str(source.folder.folder),
            config=llama,
            quantization_config=quantization,
            dtype=torch.bfloat16,
            device_map={"": 0},
            local_files_only=True,
        )
        if llm.get_input_embeddings().num_embeddings < len(tokenizer):
            llm.resize_token_embeddings(len(tokenizer))
        return llm
    llama.vocab_size = max(llama.vocab_size, len(tokenizer))  # [SEG]'s row is added by the loader
    with torch.device("meta"):
        llm = LlamaForCausalLM(llama)
    # Non-persistent buffers (RoPE frequencies) are in no checkpoint: build them on the CPU now.
    llm.model.rotary_emb = type(llm.model.rotary_emb)(config=llama)
    return llm


# ----------------------------------------------------------------------------------------------
# Step 2: the towers
# ----------------------------------------------------------------------------------------------


def build_clip(config: VisaConfig, clip_weights: str | Path | None, pretrained: bool = True) -> nn.Module:
    """The frozen vision tower of ``config`` from its own file (toy: the shipped one)."""
    from visa_lib.model.vision import VisionTower, build_vision_tower, toy_vision_config

    if config.vision_tower == "toy" and not pretrained:
        from transformers import CLIPVisionModel

        return VisionTower(CLIPVisionModel(toy_vision_config()), name="toy")
    if clip_weights is None and config.vision_tower != "toy":
        raise ValueError(
            f"build_visa({config.name!r}): pass clip_weights= a local copy of openai/clip-vit-large-patch14 "
            "(its folder); this package never downloads weights"
        )
    return build_vision_tower(config.vision_tower, weights=clip_weights)


def build_sam_for(
    config: VisaConfig, source: VisaWeights, sam_weights: str | Path | None, pretrained: bool = True
) -> Sam:
    """SAM of ``config``: from ``sam_weights``, or empty when a merged VISA folder will fill it."""
    if source.kind == "visa":
        if sam_weights is not None:
            raise ValueError(
                "build_visa: a merged VISA folder carries its own SAM (model.visual_model.*); "
                "drop sam_weights"
            )
        return sam_glue.build_sam(config.sam, pretrained=False)
    if sam_weights is None and config.sam != "toy":
        raise ValueError(
            f"build_visa({config.name!r}): a Chat-UniVi folder has no SAM; pass "
            "sam_weights=sam_vit_h_4b8939.pth (the official SAM ViT-H checkpoint)"
        )
    return sam_glue.build_sam(config.sam, checkpoint=sam_weights, pretrained=pretrained)


# ----------------------------------------------------------------------------------------------
# Step 3: assembly; step 4: weights
# ----------------------------------------------------------------------------------------------


def assemble_visa(
    config: VisaConfig,
    llm: nn.Module,
    tokenizer,
    vision_tower: nn.Module,
    sam: Sam,
    *,
    seed: int = 0,
    merge_dtype: str | None = None,
) -> VisaModel:
    """``VisaModel`` from its parts, with a fresh projector and ``[SEG]`` head and ``[SEG]`` added.

    Arguments:
      merge_dtype (str | None): None merges tokens in their own dtype (VISA's arithmetic: bf16 in a
        bf16 model); "float32" merges in float32 whatever the model's dtype.
    """
    from visa_lib.model.tokenizer import add_seg_token

    seg_token_id = add_seg_token(tokenizer)
    if llm.get_input_embeddings().num_embeddings < len(tokenizer):
        llm.resize_token_embeddings(len(tokenizer))  # toy rung: a random row for [SEG]
    if sam_glue.sam_prompt_dim(sam) != config.prompt_dim:
        raise ValueError(
            f"build_visa({config.name!r}): SAM prompt width {sam_glue.sam_prompt_dim(sam)} differs from "
            f"config.prompt_dim {config.prompt_dim}; use the SAM size the config names ({config.sam!r})"
        )
    hidden = llm.get_input_embeddings().embedding_dim
    projector = nn.Linear(vision_tower.hidden_size, hidden)
    seg_head = build_seg_head(hidden, sam_glue.sam_prompt_dim(sam))
    merge_torch_dtype = DTYPES[merge_dtype] if merge_dtype is not None else None
    merger = TokenMerger(config.cluster_nums, config.cluster_ks, seed=seed, dtype=merge_torch_dtype)
    return VisaModel(llm, vision_tower, merger, projector, seg_head, sam, tokenizer, seg_token_id, config)


def load_visa_weights_into(
    model: VisaModel, source: VisaWeights, *, llm_loaded: bool = False, seed: int = 0
) -> VisaModel:
    """Fill ``model`` with the public loaders: the folder first, then our files; nothing left on meta."""
    if source.kind == "chatunivi":
        generator = torch.Generator().manual_seed(seed)
        ckpt.load_chatunivi_checkpoint(model, source.folder, include_llm=not llm_loaded, generator=generator)
    elif source.kind == "visa":
        ckpt.load_visa_checkpoint(model, source.folder, include_llm=not llm_loaded)
    for file in source.files:
        ckpt.load_visa_weights(model, file, check_trained=False)
    left = [k for k, v in model.state_dict().items() if v.is_meta]
    if left:
        raise RuntimeError(f"build_visa: weights never loaded: {ckpt.format_keys(left)}")
    return model


def build_visa(
    name: str | VisaConfig = "toy",
    *,
    weights: str | Path | Sequence[str | Path] | None = "default",
    clip_weights: str | Path | None = None,
    sam_weights: str | Path | None = None,
    vision_tower: nn.Module | None = None,
    sam: Sam | None = None,
    pretrained: bool = True,
    dtype: str | None = None,
    load_in_8bit: bool = False,
    load_in_4bit: bool = False,
    gradient_checkpointing: bool = False,
    merge_dtype: str | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    check_trained: bool = True,
) -> VisaModel:
    """Build a VISA model by config name; the same call on both rungs.

    Toy rung: ``build_visa("toy")``. Full rung:
    ``build_visa("chatunivi-7b", weights=VISA_DIR, clip_weights=CLIP_DIR)`` for a merged VISA folder,
    or ``weights=CHATUNIVI_DIR, sam_weights="sam_vit_h_4b8939.pth"`` to start from Chat-UniVi.

    Arguments:
      name (str | VisaConfig): "toy", "chatunivi-7b", "chatunivi-13b" or a config (architecture only).
      weights: VISA's weights -- "default" (the shipped toy weights), None (random, toy rung), a
        Chat-UniVi or merged-VISA folder, our ``.safetensors``, or ``[folder, our files...]``.
      clip_weights (str | Path | None): CLIP ViT-L/14 folder or file (full rung; toy: shipped).
      sam_weights (str | Path | None): SAM checkpoint (full rung from Chat-UniVi; toy: shipped).
      vision_tower (nn.Module | None), sam (Sam | None): ready-built parts (instead of the files).
      pretrained (bool): toy only; False gives random toy CLIP and SAM too.
      dtype (str | None): "float32", "bfloat16" or "float16" for the LLM, projector, head, CLIP and
        SAM; None: "bfloat16" when ``weights`` is a folder (VISA's evaluation dtype), else "float32".
      load_in_8bit (bool), load_in_4bit (bool): bitsandbytes quantisation of the LLM (GPU only).
      gradient_checkpointing (bool): recompute LLM activations in backward (memory for time).
      merge_dtype (str | None): None = merge in the tokens' dtype (as VISA); "float32" = in float32.
      device (str | torch.device): where the model goes (quantised LLMs always sit on GPU 0).
      seed (int): seed of the random initialisations and of the merge's tie-break noise.
      check_trained (bool): warn when the ``[SEG]`` head / mask decoder look untrained.
    Returns:
      VisaModel in eval mode.
    """
    config = get_config(name)
    torch.manual_seed(seed)
    quantization = _quantization(load_in_8bit, load_in_4bit)
    source = find_visa_weights(config, weights, pretrained)
    if dtype is None:
        dtype = "bfloat16" if source.folder is not None else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"build_visa: dtype {dtype!r} is not one of {sorted(DTYPES)}")

    tokenizer = build_tokenizer(config, source)
    llm = build_llm(config, tokenizer, source, quantization)
    if vision_tower is None:
        vision_tower = build_clip(config, clip_weights, pretrained)
    if sam is None:
        sam = build_sam_for(config, source, sam_weights, pretrained)
    model = assemble_visa(config, llm, tokenizer, vision_tower, sam, seed=seed, merge_dtype=merge_dtype)
    load_visa_weights_into(model, source, llm_loaded=quantization is not None, seed=seed)
    if check_trained:
        ckpt.warn_if_untrained(model)
    return _finish(model, DTYPES[dtype], gradient_checkpointing, device, quantized=quantization is not None)


def _finish(
    model: VisaModel, dtype: torch.dtype, gradient_checkpointing: bool, device, quantized: bool
) -> VisaModel:
    """Cast to the run dtype (VISA runs everything, SAM included, in bf16), move, switch to eval."""
    if not quantized:
        model.llm.to(dtype)
    for part in (model.projector, model.seg_head, model.vision_tower, model.sam):
        part.to(dtype)
    if gradient_checkpointing:
        model.causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if quantized:
        for part in (model.vision_tower, model.projector, model.seg_head, model.sam):
            part.to(model.causal_lm.device)
    else:
        model.to(device)
    return model.eval()
