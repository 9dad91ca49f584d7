"""Checkpoints of the VISA model: Chat-UniVi, merged VISA, and our own safetensors format.

Three layouts are read (``docs/checkpoints.md``):

* **Chat-UniVi-7B/13B** (Hugging Face folder as transformers 4.31 saved it): LLaMA keys
  ``model.embed_tokens.weight``, ``model.layers.{i}.*``, ``model.norm.weight``, ``lm_head.weight``
  and ``model.mm_projector.*``, in sharded ``pytorch_model-*.bin`` (+ index) or safetensors files.
  The clustering modules ``ctm*``/``block*`` have no parameters. Two kinds of keys are accepted and
  dropped: ``model.layers.{i}.self_attn.rotary_emb.inv_freq`` (RoPE frequencies that 4.31 saved
  as a buffer; they are computed, never trained) and a copy of CLIP under ``model.vision_tower.*``
  (CLIP is loaded from its own checkpoint).
* **Merged VISA** (``merge_lora_weights_and_save_hf_model.py`` output): the same, with the
  vocabulary resized for ``[SEG]`` (32001 rows), plus ``model.visual_model.*`` (SAM) and
  ``model.text_hidden_fcs.0.{0,2}.*`` (the ``[SEG]`` head).
* **Ours** (one ``.safetensors`` file): module keys (``llm.*``, ``projector.*``, ``seg_head.*``,
  ``sam.mask_decoder.*``) and metadata naming the config, the tokenizer vocabulary (toy rung) and
  fingerprints of the frozen parts it was trained with.

Every loader is strict: missing or unexpected keys and shape mismatches raise errors that name
them. After loading, :func:`warn_if_untrained` warns when the ``[SEG]`` head or SAM's mask
decoder look untrained -- the most reported failure with LISA and VISA checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from visa_lib.weights import CheckpointKeyError, check_state_dict, format_keys, read_state_dict

if TYPE_CHECKING:
    from visa_lib.model.visa import VisaModel

#: ``format`` value in the metadata of our own weight files.
OWN_FORMAT = "visa_lib.visa_weights.v1"
#: Components saved by default: what VISA trains, plus the frozen-but-untied LLM and projector.
DEFAULT_COMPONENTS: tuple[str, ...] = ("llm", "projector", "seg_head", "sam.mask_decoder")
#: Frozen parts whose fingerprints are recorded, to notice weights trained on other foundations.
FINGERPRINTED: tuple[str, ...] = ("vision_tower", "sam.image_encoder", "sam.prompt_encoder")

# Checkpoint prefix -> our module prefix. Order matters: the first matching prefix wins.
_PREFIX_MAP: tuple[tuple[str, str | None], ...] = (
    ("model.vision_tower.", None),  # CLIP copy: ignored, CLIP is loaded from its own checkpoint
    ("model.mm_projector.", "projector."),
    ("model.visual_model.", "sam."),
    ("model.text_hidden_fcs.0.", "seg_head."),
    ("lm_head.", "llm.lm_head."),
    ("model.", "llm.model."),
)
_PEFT_PREFIX = "base_model.model."
#: RoPE frequencies saved by transformers 4.31 with every LLaMA layer: accepted and dropped.
ROTARY_BUFFER = re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")
#: What to do about a key error in a Hugging Face folder.
_FOLDER_HINT = (
    "Load the folder as it was published (all shards, no renamed keys); docs/checkpoints.md lists the "
    "keys of a Chat-UniVi and of a merged VISA folder"
)
_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")


class UntrainedWeightsWarning(UserWarning):
    """The ``[SEG]`` head or the mask decoder look untrained: masks will be noise."""


# ----------------------------------------------------------------------------------------------
# Reading Hugging Face style folders (single file or shards, safetensors or torch pickles)
# ----------------------------------------------------------------------------------------------


class CheckpointFiles:
    """Lazy access to a checkpoint folder or file: key names first, tensors only when asked.

    Arguments:
      path (str | Path): a folder with ``model.safetensors[.index.json]`` or
        ``pytorch_model.bin[.index.json]`` (+ ``config.json``), or a single weights file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"checkpoint {self.path} does not exist")
        self.folder = self.path if self.path.is_dir() else self.path.parent
        self._key_to_file: dict[str, Path] = {}
        if self.path.is_file():
            files = [self.path]
        else:
            files = self._files_in_folder()
        for file in files:
            for key in self._keys_of(file):
                self._key_to_file[key] = file

    def _files_in_folder(self) -> list[Path]:
        for name in _INDEX_FILES:
            index = self.folder / name
            if index.is_file():
                weight_map = json.loads(index.read_text())["weight_map"]
                shards = sorted({self.folder / f for f in weight_map.values()})
                absent = [s.name for s in shards if not s.is_file()]
                if absent:
                    raise FileNotFoundError(f"{index}: shards {absent} are missing; download them all")
                return shards
        for name in _SINGLE_FILES:
            if (self.folder / name).is_file():
                return [self.folder / name]
        raise FileNotFoundError(
            f"{self.folder}: no model.safetensors, pytorch_model.bin or their .index.json; "
            "point to the downloaded checkpoint folder"
        )

    @staticmethod
    def _keys_of(file: Path) -> list[str]:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as handle:
                return list(handle.keys())
        return list(_torch_load(file))

    def keys(self) -> list[str]:
        """All tensor names in the checkpoint."""
        return list(self._key_to_file)

    def config(self) -> dict | None:
        """``config.json`` of the folder, or None."""
        file = self.folder / "config.json"
        return json.loads(file.read_text()) if file.is_file() else None

    def load(self, keys: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Read some tensors (all when ``keys`` is None) to the CPU, one file at a time."""
        wanted = set(self._key_to_file) if keys is None else set(keys)
        unknown = wanted - set(self._key_to_file)
        if unknown:
            raise CheckpointKeyError(f"{self.path}: no tensors named {format_keys(unknown)}")
        out: dict[str, torch.Tensor] = {}
        for file in sorted({self._key_to_file[k] for k in wanted}):
            mine = [k for k in wanted if self._key_to_file[k] == file]
            if file.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(file), framework="pt") as handle:
                    out.update({k: handle.get_tensor(k) for k in mine})
            else:
                state = _torch_load(file)
                out.update({k: state[k] for k in mine})
        return out


def _torch_load(file: Path) -> dict[str, torch.Tensor]:
    return read_state_dict(file, what="checkpoint shard", mmap=True)


# ----------------------------------------------------------------------------------------------
# Key names
# ----------------------------------------------------------------------------------------------


def checkpoint_key_to_module(key: str) -> str | None:
    """Map a Chat-UniVi / merged-VISA key to our ``VisaModel`` key (None: a key we skip on purpose).

    ``model.layers.0.self_attn.q_proj.weight`` -> ``llm.model.layers.0.self_attn.q_proj.weight``,
    ``model.text_hidden_fcs.0.2.bias`` -> ``seg_head.2.bias``, ``model.visual_model.X`` -> ``sam.X``,
    ``model.mm_projector.weight`` -> ``projector.weight``, ``lm_head.weight`` -> ``llm.lm_head.weight``.
    """
    if key.startswith(_PEFT_PREFIX):
        raise CheckpointKeyError(
            f"checkpoint key {key!r} carries the PEFT prefix {_PEFT_PREFIX!r}: this is an un-merged LoRA "
            "checkpoint. Merge the LoRA weights first (VISA's merge_lora_weights_and_save_hf_model.py)"
        )
    if ROTARY_BUFFER.fullmatch(key):
        return None  # computed from rope_theta, never trained (transformers 4.31 saved it)
    for prefix, ours in _PREFIX_MAP:
        if key.startswith(prefix):
            return None if ours is None else ours + key[len(prefix) :]
    return "?" + key  # no known prefix: reported as unexpected


def module_key_to_checkpoint(key: str) -> str:
    """Inverse of :func:`checkpoint_key_to_module` (used to export the merged-VISA layout)."""
    for prefix, ours in reversed(_PREFIX_MAP):
        if ours is not None and key.startswith(ours):
            return prefix + key[len(ours) :]
    raise KeyError(f"module key {key!r} has no checkpoint name (vision tower keys are never exported)")


def _component_state(model: VisaModel, component: str) -> dict[str, torch.Tensor]:
    """State dict of one component (``llm``, ``projector``, ``seg_head``, ``sam``, ``sam.mask_decoder``)."""
    module: nn.Module = model.causal_lm if component == "llm" else model.get_submodule(component)
    return {f"{component}.{k}": v for k, v in module.state_dict().items()}


def _check_not_peft(model: VisaModel, what: str) -> None:
    if model.llm is not model.causal_lm:
        raise RuntimeError(
            f"{what}: the LLM is wrapped by PEFT (LoRA). Load checkpoints before "
            "prepare_for_training, or merge the adapters first (llm.merge_and_unload())"
        )


def load_module_state(
    model: VisaModel,
    state: Mapping[str, torch.Tensor],
    components: Iterable[str],
    source: str,
    checkpoint_names: bool = False,
    hint: str = "",
) -> None:
    """Strictly load module-keyed tensors into the named components of ``model``.

    Components whose tensors are still on the meta device (``build_visa`` creates the full-rung LLM
    there, so no random 7B init is paid for) take the checkpoint's tensors as they are.

    Arguments:
      model (VisaModel): the model to fill.
      state (Mapping[str, Tensor]): keys like ``llm.model.norm.weight``, ``seg_head.0.weight``.
      components (Iterable[str]): components that must be fully covered by ``state``.
      source (str): shown in error messages.
      checkpoint_names (bool): name keys in errors as the checkpoint spells them (``model.*``).
      hint (str): what to do, appended to error messages.
    Raises:
      CheckpointKeyError: missing keys of those components, or keys outside them, all named.
      ValueError: shape mismatches, named with both shapes.
    """
    components = list(components)
    expected: dict[str, torch.Tensor] = {}
    for component in components:
        expected.update(_component_state(model, component))

    def rename(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {module_key_to_checkpoint(k) if checkpoint_names else k: v for k, v in tensors.items()}

    check_state_dict(rename(expected), rename(state), source, hint)
    for component in components:
        module = model.causal_lm if component == "llm" else model.get_submodule(component)
        prefix = component + "."
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        on_meta = any(t.is_meta for t in module.state_dict().values())
        module.load_state_dict(sub, strict=True, assign=on_meta)


def map_checkpoint_keys(keys: Iterable[str], source: str, allowed: Iterable[str]) -> dict[str, str]:
    """Checkpoint key -> module key for the allowed component prefixes; anything else raises.

    Arguments:
      keys (Iterable[str]): checkpoint key names.
      source (str): for messages.
      allowed (Iterable[str]): module prefixes this kind may hold (e.g. ``("llm.", "projector.")``).
    """
    allowed = tuple(allowed)
    mapping, unexpected = {}, []
    for key in keys:
        ours = checkpoint_key_to_module(key)
        if ours is None:
            continue
        if ours.startswith(allowed):
            mapping[key] = ours
        else:
            unexpected.append(key)
    if unexpected:
        raise CheckpointKeyError(
            f"{source}: unexpected keys for this kind of checkpoint: {format_keys(unexpected)}"
        )
    return mapping


def classify_checkpoint(keys: Iterable[str]) -> str:
    """``"visa"`` if the keys hold SAM and the ``[SEG]`` head, ``"chatunivi"`` if only LLM + projector."""
    keys = list(keys)
    if any(k.startswith(_PEFT_PREFIX) for k in keys):
        checkpoint_key_to_module(next(k for k in keys if k.startswith(_PEFT_PREFIX)))  # raises
    if any(k.startswith(("model.visual_model.", "model.text_hidden_fcs.")) for k in keys):
        return "visa"
    return "chatunivi"


# ----------------------------------------------------------------------------------------------
# Loaders into a built model
# ----------------------------------------------------------------------------------------------


def _files(path: str | Path | CheckpointFiles) -> CheckpointFiles:
    return path if isinstance(path, CheckpointFiles) else CheckpointFiles(path)


def _add_token_rows(
    model: VisaModel, state: dict[str, torch.Tensor], std: float, generator: torch.Generator | None
) -> None:
    """Give ``embed_tokens`` / ``lm_head`` of a Chat-UniVi checkpoint rows for the added tokens.

    Chat-UniVi has 32000 rows; after ``[SEG]`` is added the model has 32001. The new rows are drawn
    from ``N(0, std)`` with ``std = initializer_range`` (0.02), as transformers 4.31's
    ``resize_token_embeddings`` (which VISA calls) initialises them.
    """
    for key, module in (
        ("llm.model.embed_tokens.weight", model.causal_lm.get_input_embeddings()),
        ("llm.lm_head.weight", model.causal_lm.get_output_embeddings()),
    ):
        if key not in state or module is None:
            continue
        have, want = state[key].shape[0], module.weight.shape[0]
        if have < want and state[key].shape[1:] == module.weight.shape[1:]:
            extra = torch.empty((want - have, *state[key].shape[1:]), dtype=torch.float32)
            extra.normal_(0.0, std, generator=generator)
            state[key] = torch.cat([state[key], extra.to(state[key].dtype)])


def _load_folder_components(
    model: VisaModel,
    files: CheckpointFiles,
    components: tuple[str, ...],
    include_llm: bool,
    generator: torch.Generator | None = None,
) -> None:
    """Map a folder's keys onto ``components`` (strict), read the tensors and load them."""
    source = str(files.path)
    mapping = map_checkpoint_keys(files.keys(), source, tuple(c + "." for c in components))
    if not include_llm:  # the LLM came from transformers' own (quantised) loader: check names only
        expected = {module_key_to_checkpoint(k) for k in _component_state(model, "llm")}
        have = {k for k, v in mapping.items() if v.startswith("llm.")}
        if expected != have:
            raise CheckpointKeyError(
                f"{source}: LLM keys differ; missing: {format_keys(expected - have) or 'none'}; "
                f"unexpected: {format_keys(have - expected) or 'none'}. {_FOLDER_HINT}"
            )
        mapping = {k: v for k, v in mapping.items() if not v.startswith("llm.")}
        components = tuple(c for c in components if c != "llm")
    state = {mapping[k]: v for k, v in files.load(mapping).items()}
    if "llm" in components:
        std = float((files.config() or {}).get("initializer_range", 0.02))
        _add_token_rows(model, state, std, generator)
    load_module_state(model, state, components, source, checkpoint_names=True, hint=_FOLDER_HINT)


def load_chatunivi_checkpoint(
    model: VisaModel,
    path: str | Path | CheckpointFiles,
    *,
    include_llm: bool = True,
    generator: torch.Generator | None = None,
) -> VisaModel:
    """Load a Chat-UniVi checkpoint (LLaMA + ``mm_projector``) into ``model``, strictly.

    The model's vocabulary may be larger than the checkpoint's by the added tokens (``[SEG]``):
    their rows are initialised like transformers 4.31's ``resize_token_embeddings``. SAM and the
    ``[SEG]`` head are untouched, so a warning says the head is untrained.

    Arguments:
      model (VisaModel): a model of the same size, LLM not yet PEFT-wrapped.
      path (str | Path | CheckpointFiles): the checkpoint folder.
      include_llm (bool): False when the LLM was already loaded by transformers (8/4-bit); its key
        names are still checked.
      generator (torch.Generator | None): source of the added rows' initial values.
    """
    files = _files(path)
    _check_not_peft(model, "load_chatunivi_checkpoint")
    if classify_checkpoint(files.keys()) == "visa":
        raise ValueError(f"{files.path} is a merged VISA checkpoint (it holds SAM); use load_visa_checkpoint")
    _load_folder_components(model, files, ("llm", "projector"), include_llm, generator)
    warn_if_untrained(model)
    return model


def load_visa_checkpoint(
    model: VisaModel,
    path: str | Path | CheckpointFiles,
    base_sam_decoder: Mapping[str, torch.Tensor] | None = None,
    *,
    include_llm: bool = True,
) -> VisaModel:
    """Load a merged VISA checkpoint: LLM (with ``[SEG]`` row), projector, SAM and the ``[SEG]`` head.

    Arguments:
      model (VisaModel): a model of the same size whose vocabulary already holds ``[SEG]``.
      path (str | Path | CheckpointFiles): the checkpoint folder (``docs/checkpoints.md``).
      base_sam_decoder (Mapping | None): the mask decoder of the base SAM (e.g. ``sam_vit_h``); when
        the checkpoint's decoder equals it, a warning says the decoder was never trained.
      include_llm (bool): as in :func:`load_chatunivi_checkpoint`.
    """
    files = _files(path)
    _check_not_peft(model, "load_visa_checkpoint")
    _load_folder_components(model, files, ("llm", "projector", "sam", "seg_head"), include_llm)
    warn_if_untrained(model, base_sam_decoder)
    return model


def visa_folder_config(model: VisaModel) -> dict:
    """``config.json`` of a merged VISA folder for ``model``: what transformers 4.31 and VISA read.

    LLaMA fields in 4.31's spelling (``rope_scaling: null``; newer names such as ``rope_parameters``
    would make 4.31 fail), Chat-UniVi's ``mm_*`` fields and cluster ``config``, and VISA's
    ``train_mask_decoder`` / ``out_dim`` / ``vision_tower`` (``docs/checkpoints.md``).
    """
    llama = model.causal_lm.config
    dtype = str(model.projector.weight.dtype).replace("torch.", "")
    rope = getattr(llama, "rope_parameters", None) or {}
    vision = getattr(model.vision_tower, "name", "toy")
    vision = "openai/clip-vit-large-patch14" if vision == "clip-vit-large-patch14" else vision
    rates = {f"spatial_cluster_rate{i}": n for i, n in enumerate(model.merger.cluster_nums)}
    return {
        "architectures": ["VISAForCausalLM"],
        "model_type": "ChatUniVi",
        "bos_token_id": llama.bos_token_id,
        "eos_token_id": llama.eos_token_id,
        "pad_token_id": llama.pad_token_id,
        "hidden_act": llama.hidden_act,
        "hidden_size": llama.hidden_size,
        "initializer_range": llama.initializer_range,
        "intermediate_size": llama.intermediate_size,
        "max_position_embeddings": llama.max_position_embeddings,
        "num_attention_heads": llama.num_attention_heads,
        "num_hidden_layers": llama.num_hidden_layers,
        "num_key_value_heads": llama.num_key_value_heads,
        "pretraining_tp": 1,
        "rms_norm_eps": llama.rms_norm_eps,
        "rope_scaling": None,
        "rope_theta": float(rope.get("rope_theta", 10000.0)),
        "tie_word_embeddings": bool(llama.tie_word_embeddings),
        "torch_dtype": dtype,
        "use_cache": False,
        "vocab_size": model.causal_lm.get_input_embeddings().num_embeddings,
        # Chat-UniVi's multimodal fields, as VISA's VisaModel sets them
        "mm_vision_tower": vision,
        "vision_tower": vision,
        "mm_hidden_size": model.projector.in_features,
        "mm_vision_select_layer": int(getattr(model.vision_tower, "select_layer", -2)),
        "mm_vision_select_feature": "patch",
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "image_aspect_ratio": "square",
        "tune_mm_mlp_adapter": False,
        "freeze_mm_mlp_adapter": True,
        "use_mm_proj": True,
        "config": {
            "use_cluster": True,
            "freeze": False,
            "vision_tune": False,
            **rates,
            "temporal_cluster_rate": 0.0625,
        },
        # VISA's own fields: their presence makes VISA build SAM and the [SEG] head when loading
        "train_mask_decoder": True,
        "out_dim": model.prompt_dim,
    }


def _rotary_buffers(model: VisaModel) -> dict[str, torch.Tensor]:
    """The ``rotary_emb.inv_freq`` buffers transformers 4.31 writes per layer (``1 / theta^(2i/d)``)."""
    llama = model.causal_lm.config
    head_dim = llama.hidden_size // llama.num_attention_heads
    theta = float((getattr(llama, "rope_parameters", None) or {}).get("rope_theta", 10000.0))
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    return {
        f"model.layers.{i}.self_attn.rotary_emb.inv_freq": inv_freq.clone()
        for i in range(llama.num_hidden_layers)
    }


def export_visa_checkpoint(
    model: VisaModel, folder: str | Path, max_shard_tensors: int | None = None
) -> Path:
    """Write ``model`` as a merged VISA folder that VISA's own code and ``build_visa`` both read.

    The folder holds what VISA's ``merge_lora_weights_and_save_hf_model.py`` writes: the tensors
    under VISA's key names (with 4.31's ``rotary_emb.inv_freq`` buffers, no CLIP), sharded with an
    index (safetensors), ``config.json`` (:func:`visa_folder_config`) and the tokenizer files
    (``tokenizer.model`` + ``added_tokens.json`` holding ``[SEG]`` on the full rung).

    Arguments:
      model (VisaModel): the model (LoRA merged).
      folder (str | Path): output folder.
      max_shard_tensors (int | None): tensors per shard (None: one file).
    Returns:
      Path: the folder.
    """
    from safetensors.torch import save_file

    _check_not_peft(model, "export_visa_checkpoint")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for component in ("llm", "projector", "sam", "seg_head"):
        for key, value in _component_state(model, component).items():
            state[module_key_to_checkpoint(key)] = value.detach().cpu().contiguous()
    state.update(_rotary_buffers(model))
    keys = sorted(state)
    size = max_shard_tensors or len(keys)
    chunks = [keys[i : i + size] for i in range(0, len(keys), size)]
    if len(chunks) == 1:
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, chunk in enumerate(chunks):
            name = f"model-{i + 1:05d}-of-{len(chunks):05d}.safetensors"
            save_file({k: state[k] for k in chunk}, str(folder / name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(chunk, name))
        total = sum(t.numel() * t.element_size() for t in state.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    (folder / "config.json").write_text(json.dumps(visa_folder_config(model), indent=2))
    model.tokenizer.save_pretrained(str(folder))
    return folder


# ----------------------------------------------------------------------------------------------
# Our own format
# ----------------------------------------------------------------------------------------------


def fingerprint(module: nn.Module) -> str:
    """A short hash of a module's parameters and buffers (names, shapes, float64 sums)."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        stats = (
            name,
            tuple(value.shape),
            round(float(value.double().sum()), 6),
            round(float(value.double().abs().sum()), 6),
        )
        digest.update(repr(stats).encode())
    return digest.hexdigest()[:16]


def save_visa_weights(
    model: VisaModel,
    path: str | Path,
    components: Iterable[str] = DEFAULT_COMPONENTS,
    extra: Mapping | None = None,
) -> Path:
    """Save components of ``model`` to one safetensors file in our format.

    Arguments:
      model (VisaModel): the model; LoRA adapters must be merged first.
      path (str | Path): destination ``.safetensors``.
      components (Iterable[str]): module names to save (default: what VISA trains + LLM + projector).
      extra (Mapping | None): JSON-serialisable notes stored in the metadata (e.g. training stats).
    Returns:
      Path: the file.
    """
    from safetensors.torch import save_file

    from visa_lib.model.tokenizer import tokenizer_vocabulary

    _check_not_peft(model, "save_visa_weights")
    components = list(components)
    state: dict[str, torch.Tensor] = {}
    for component in components:
        state.update(
            {k: v.detach().cpu().contiguous() for k, v in _component_state(model, component).items()}
        )
    metadata = {
        "format": OWN_FORMAT,
        "config": model.config.name,
        "components": json.dumps(components),
        "seg_token_id": str(model.seg_token_id),
        "fingerprints": json.dumps({name: fingerprint(model.get_submodule(name)) for name in FINGERPRINTED}),
        "extra": json.dumps(dict(extra or {})),
    }
    if model.config.tokenizer == "toy":  # the toy tokenizer is rebuilt from this list, so ids never drift
        metadata["vocab"] = json.dumps(tokenizer_vocabulary(model.tokenizer))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)
    return path


def read_visa_weights_metadata(path: str | Path) -> dict:
    """The metadata of one of our weight files, JSON fields decoded; raises if it is not ours."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"VISA weights {path} do not exist; train them with scripts/train_toy_visa.py"
        )
    with safe_open(str(path), framework="pt") as handle:
        raw = handle.metadata() or {}
    if raw.get("format") != OWN_FORMAT:
        raise ValueError(
            f"{path}: not a visa_lib weights file (format {raw.get('format')!r}, expected {OWN_FORMAT!r}); "
            "for Hugging Face folders use load_chatunivi_checkpoint / load_visa_checkpoint"
        )
    meta = dict(raw)
    for key in ("components", "fingerprints", "extra", "vocab"):
        if key in meta:
            meta[key] = json.loads(meta[key])
    meta["seg_token_id"] = int(meta["seg_token_id"])
    return meta


def load_visa_weights(model: VisaModel, path: str | Path, check_trained: bool = True) -> dict:
    """Load one of our weight files into ``model`` (strict for the components it lists).

    Arguments:
      model (VisaModel): built from the same config (and, on the toy rung, the saved vocabulary).
      path (str | Path): the ``.safetensors`` file.
      check_trained (bool): run :func:`warn_if_untrained` afterwards.
    Returns:
      dict: the file's metadata.
    """
    from safetensors.torch import load_file

    from visa_lib.model.tokenizer import tokenizer_vocabulary

    _check_not_peft(model, "load_visa_weights")
    meta = read_visa_weights_metadata(path)
    if meta["config"] != model.config.name:
        raise ValueError(f"{path}: saved from config {meta['config']!r}, the model is {model.config.name!r}")
    if "vocab" in meta and meta["vocab"] != tokenizer_vocabulary(model.tokenizer):
        raise ValueError(
            f"{path}: the model's tokenizer differs from the one the weights were trained with; build the "
            "model with build_visa(..., weights=path), which rebuilds the tokenizer from the saved vocabulary"
        )
    if meta["seg_token_id"] != model.seg_token_id:
        raise ValueError(
            f"{path}: [SEG] id {meta['seg_token_id']} in the file, {model.seg_token_id} in the model"
        )
    load_module_state(model, load_file(str(path)), meta["components"], str(path))
    changed = [
        name
        for name, saved in meta["fingerprints"].items()
        if name in dict(model.named_modules()) and fingerprint(model.get_submodule(name)) != saved
    ]
    if changed:
        warnings.warn(
            f"{path}: was trained on top of different {changed} weights than the ones loaded now; "
            "masks may be poor. Retrain: `python scripts/train_toy_visa.py`",
            UntrainedWeightsWarning,
            stacklevel=2,
        )
    if check_trained:
        warn_if_untrained(model)
    return meta


# ----------------------------------------------------------------------------------------------
# Did anybody train this?
# ----------------------------------------------------------------------------------------------


def _looks_default_linear(layer: nn.Linear) -> bool:
    """Whether a Linear still looks like PyTorch's init: U(-b, b), b = 1/sqrt(fan_in), for weight and bias."""
    bound = 1.0 / layer.in_features**0.5
    w = layer.weight.detach().float()
    inside = bool(w.abs().max() <= bound * 1.0001)
    uniform_std = bound / 3**0.5
    close_std = abs(float(w.std()) - uniform_std) < 0.05 * uniform_std
    bias_ok = layer.bias is None or bool(layer.bias.detach().float().abs().max() <= bound * 1.0001)
    return inside and close_std and bias_ok


def untrained_reasons(
    model: VisaModel, base_sam_decoder: Mapping[str, torch.Tensor] | None = None
) -> list[str]:
    """Reasons to believe the ``[SEG]`` path is untrained (empty list: nothing suspicious).

    Arguments:
      model (VisaModel): the loaded model.
      base_sam_decoder (Mapping | None): state dict of the base SAM's ``mask_decoder``; a decoder
        identical to it was never fine-tuned.
    """
    reasons = []
    linears = [m for m in model.seg_head if isinstance(m, nn.Linear)]
    if all(_looks_default_linear(m) for m in linears):
        reasons.append("the [SEG] head (text_hidden_fcs) still has PyTorch's default random initialisation")
    if any(float(m.weight.detach().abs().max()) == 0.0 for m in linears):
        reasons.append("the [SEG] head has an all-zero weight matrix")
    if base_sam_decoder is not None:
        current = model.sam.mask_decoder.state_dict()
        same = set(current) == set(base_sam_decoder) and all(
            torch.equal(current[k].cpu(), base_sam_decoder[k].cpu().to(current[k].dtype)) for k in current
        )
        if same:
            reasons.append("SAM's mask decoder is identical to the base SAM's, i.e. it was never fine-tuned")
    return reasons


def warn_if_untrained(
    model: VisaModel, base_sam_decoder: Mapping[str, torch.Tensor] | None = None
) -> list[str]:
    """Warn (``UntrainedWeightsWarning``) if :func:`untrained_reasons` finds anything; return the reasons."""
    reasons = untrained_reasons(model, base_sam_decoder)
    if reasons:
        warnings.warn(
            "VISA weights look untrained: " + "; ".join(reasons) + ". Masks will be noise. Load trained VISA "
            "weights (a merged VISA checkpoint or our .safetensors) or train the model first",
            UntrainedWeightsWarning,
            stacklevel=3,
        )
    return reasons
