"""Checkpoint folders exactly as they are published (tiny sizes), and our own weight format.

One helper, :func:`write_published_folder`, writes a Chat-UniVi or merged-VISA folder the way
transformers 4.31's ``save_pretrained`` and VISA's merge script write them (``docs/checkpoints.md``):
sharded ``pytorch_model-*.bin`` + index (or safetensors), ``rotary_emb.inv_freq`` buffers,
``config.json`` with ``model_type: ChatUniVi``, the ``mm_*`` and cluster fields, and only
``tokenizer.model`` (+ its small json files) as tokenizer.
"""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from test_visa_model import TINY, build_tiny_visa, frames, tiny_vision_tower
from transformers import LlamaForCausalLM

from visa_lib.model.build import build_visa
from visa_lib.model.checkpoints import (
    CheckpointKeyError,
    UntrainedWeightsWarning,
    checkpoint_key_to_module,
    export_visa_checkpoint,
    load_visa_weights,
    read_visa_weights_metadata,
    save_visa_weights,
    untrained_reasons,
)
from visa_lib.model.sam import build_sam
from visa_lib.model.tokenizer import build_toy_tokenizer

FULL = TINY.replace(name="tiny-full", tokenizer="checkpoint")
LLAMA_SP = Path(__file__).parent / "fixtures" / "llama_sp"  # tokenizer.model with 700 pieces
SP_VOCAB = 700

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is fastest


def write_published_folder(
    folder: Path,
    kind: str = "chatunivi",
    fmt: str = "bin",
    shards: int = 2,
    dtype: torch.dtype = torch.bfloat16,
    seed: int = 3,
    edit=None,
    config_edit=None,
) -> dict[str, torch.Tensor]:
    """Write a tiny Chat-UniVi ("chatunivi") or merged VISA ("visa") folder in the published layout.

    Arguments:
      fmt: "bin" (``pytorch_model-0000i-of-0000n.bin`` + ``pytorch_model.bin.index.json``, what 4.31
        writes by default) or "safetensors" (``model-*.safetensors`` + ``model.safetensors.index.json``).
      edit: optional function changing the state dict before it is written (to break it on purpose).
      config_edit: optional function changing ``config.json`` before it is written.
    Returns:
      the tensors written, by checkpoint key.
    """
    vocab = SP_VOCAB + (1 if kind == "visa" else 0)  # the merged VISA folder holds [SEG]'s row
    llama = TINY.llama_config(vocab_size=vocab)
    llama.update({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0})
    torch.manual_seed(seed)
    state = {k: v.clone() for k, v in LlamaForCausalLM(llama).state_dict().items()}
    head_dim = llama.hidden_size // llama.num_attention_heads
    for i in range(llama.num_hidden_layers):  # the persistent RoPE buffer of transformers 4.31
        state[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = 1.0 / (
            10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)
        )
    state["model.mm_projector.weight"] = torch.randn(32, 32) * 0.1
    state["model.mm_projector.bias"] = torch.randn(32) * 0.1
    if kind == "visa":
        sam = build_sam("toy", pretrained=False)
        with torch.no_grad():
            sam.mask_decoder.iou_token.weight.add_(1.0)  # differ from a fresh SAM
        state.update({f"model.visual_model.{k}": v.clone() for k, v in sam.state_dict().items()})
        state["model.text_hidden_fcs.0.0.weight"] = torch.randn(32, 32) * 0.5  # trained-looking values
        state["model.text_hidden_fcs.0.0.bias"] = torch.randn(32) * 0.5
        state["model.text_hidden_fcs.0.2.weight"] = torch.randn(64, 32) * 0.5
        state["model.text_hidden_fcs.0.2.bias"] = torch.randn(64) * 0.5
    state = {k: (v if k.endswith("inv_freq") else v.to(dtype)).contiguous() for k, v in state.items()}
    if edit is not None:
        edit(state)

    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "_name_or_path": "Chat-UniVi/Chat-UniVi",
        "architectures": ["VISAForCausalLM" if kind == "visa" else "ChatUniViLlamaForCausalLM"],
        "model_type": "ChatUniVi",
        **{k: getattr(llama, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id", "hidden_act")},
        **{k: getattr(llama, k) for k in ("hidden_size", "intermediate_size", "initializer_range")},
        **{k: getattr(llama, k) for k in ("num_attention_heads", "num_hidden_layers", "num_key_value_heads")},
        "max_position_embeddings": llama.max_position_embeddings,
        "pretraining_tp": 1,
        "rms_norm_eps": llama.rms_norm_eps,
        "rope_scaling": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.31.0",
        "use_cache": True,
        "vocab_size": vocab,
        "mm_hidden_size": 32,
        "mm_vision_tower": "openai/clip-vit-large-patch14",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "config": {
            "use_cluster": True,
            "spatial_cluster_rate0": 8,
            "spatial_cluster_rate1": 4,
            "spatial_cluster_rate2": 2,
            "temporal_cluster_rate": 0.0625,
        },
    }
    if kind == "visa":
        config.update(
            {"vision_tower": "openai/clip-vit-large-patch14", "train_mask_decoder": True, "out_dim": 64}
        )
    if config_edit is not None:
        config_edit(config)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(LLAMA_SP / name, folder / name)
    if kind == "visa":
        (folder / "added_tokens.json").write_text(json.dumps({"[SEG]": SP_VOCAB}))

    keys = sorted(state)
    chunks = [keys[i::shards] for i in range(shards)]
    weight_map = {}
    for i, chunk in enumerate(chunks):
        if fmt == "bin":
            name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
            torch.save({k: state[k] for k in chunk}, folder / name)
        else:
            name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            save_file({k: state[k] for k in chunk}, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(chunk, name))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = "pytorch_model.bin.index.json" if fmt == "bin" else "model.safetensors.index.json"
    (folder / index).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return state


def _build(folder: Path, **kwargs):
    parts = {"vision_tower": tiny_vision_tower(), "sam": build_sam("toy", pretrained=False)}
    return build_visa(FULL, weights=folder, **{**parts, **kwargs})


def test_key_names_map_onto_modules():
    assert checkpoint_key_to_module("model.layers.3.self_attn.q_proj.weight") == (
        "llm.model.layers.3.self_attn.q_proj.weight"
    )
    assert checkpoint_key_to_module("lm_head.weight") == "llm.lm_head.weight"
    assert checkpoint_key_to_module("model.text_hidden_fcs.0.2.bias") == "seg_head.2.bias"
    assert checkpoint_key_to_module("model.visual_model.mask_decoder.iou_token.weight") == (
        "sam.mask_decoder.iou_token.weight"
    )
    assert checkpoint_key_to_module("model.mm_projector.weight") == "projector.weight"
    assert checkpoint_key_to_module("model.vision_tower.vision_tower.x") is None
    assert checkpoint_key_to_module("model.layers.31.self_attn.rotary_emb.inv_freq") is None
    # only the per-layer 4.31 buffer is dropped; anything else named like it is an unknown LLM key
    assert checkpoint_key_to_module("model.rotary_emb.inv_freq") == "llm.model.rotary_emb.inv_freq"
    with pytest.raises(CheckpointKeyError, match="un-merged LoRA"):
        checkpoint_key_to_module("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight")


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_chatunivi_folder_loads_as_published(tmp_path, fmt):
    state = write_published_folder(tmp_path / "chatunivi", "chatunivi", fmt=fmt)
    assert not (tmp_path / "chatunivi" / "tokenizer.json").exists()
    with pytest.warns(UntrainedWeightsWarning, match="default random initialisation"):
        model = _build(tmp_path / "chatunivi")
    assert model.seg_token_id == SP_VOCAB and len(model.tokenizer) == SP_VOCAB + 1
    embed = model.causal_lm.get_input_embeddings().weight
    assert embed.shape[0] == SP_VOCAB + 1 and embed.dtype == torch.bfloat16  # bf16: VISA's dtype
    assert torch.equal(embed[:SP_VOCAB], state["model.embed_tokens.weight"])
    assert 0.005 < float(embed[SP_VOCAB].detach().float().std()) < 0.05  # [SEG]'s new row: N(0, 0.02) as 4.31
    assert torch.equal(
        model.causal_lm.model.layers[1].mlp.down_proj.weight, state["model.layers.1.mlp.down_proj.weight"]
    )
    assert torch.equal(model.projector.weight, state["model.mm_projector.weight"])
    clip = frames(3)
    logits = model.segment(clip[:2], clip[2], "the red circle")
    assert logits.shape == (1, 48, 64) and logits.dtype == torch.float32


def test_merged_visa_folder_loads_everything(tmp_path):
    state = write_published_folder(tmp_path / "visa", "visa", fmt="safetensors", shards=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)
        model = build_visa(FULL, weights=tmp_path / "visa", vision_tower=tiny_vision_tower())
    assert model.seg_token_id == SP_VOCAB  # from added_tokens.json, as VISA's loader reads it
    assert torch.equal(model.seg_head[2].weight, state["model.text_hidden_fcs.0.2.weight"])
    sam_state = model.sam.state_dict()
    for key in (
        "mask_decoder.iou_token.weight",
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
        "image_encoder.blocks.0.attn.qkv.weight",
    ):
        assert torch.equal(sam_state[key], state[f"model.visual_model.{key}"])
    assert torch.equal(model.causal_lm.lm_head.weight, state["lm_head.weight"])
    assert model.sam.mask_decoder.iou_token.weight.dtype == torch.bfloat16  # SAM runs in bf16 as in VISA


def _expect_error(tmp_path, error, match, kind="visa", **folder_kwargs):
    write_published_folder(tmp_path / "bad", kind, **folder_kwargs)
    with pytest.raises(error, match=match) as info:
        _build(tmp_path / "bad", check_trained=False)
    assert "7b" not in str(info.value) and "13b" not in str(info.value)
    return str(info.value)


def test_missing_llm_key_is_named(tmp_path):
    message = _expect_error(
        tmp_path,
        CheckpointKeyError,
        r"missing keys: model\.layers\.1\.mlp\.up_proj\.weight",
        edit=lambda s: s.pop("model.layers.1.mlp.up_proj.weight"),
    )
    assert "docs/checkpoints.md" in message


def test_missing_seg_head_key_is_named_with_checkpoint_spelling(tmp_path):
    _expect_error(
        tmp_path,
        CheckpointKeyError,
        r"model\.text_hidden_fcs\.0\.2\.bias",
        edit=lambda s: s.pop("model.text_hidden_fcs.0.2.bias"),
    )


@pytest.mark.parametrize(
    "key", ["model.foo.weight", "vision_model.encoder.weight", "model.layers.0.mlp.rotary_emb.inv_freq"]
)
def test_unexpected_keys_are_named(tmp_path, key):
    def add(state):
        state[key] = torch.zeros(2)

    _expect_error(tmp_path, CheckpointKeyError, key.replace(".", r"\."), kind="chatunivi", edit=add)


def test_shape_mismatch_is_explained(tmp_path):
    def shrink(state):
        state["model.mm_projector.weight"] = torch.zeros(32, 16)

    _expect_error(tmp_path, ValueError, "model.mm_projector.weight", kind="chatunivi", edit=shrink)


def test_config_json_is_checked_with_advice_that_fits(tmp_path):
    _expect_error(
        tmp_path / "a",
        ValueError,
        "intermediate_size = 48.*no registered config",
        config_edit=lambda c: c.update(intermediate_size=48),
    )
    _expect_error(
        tmp_path / "b", ValueError, "model_type 'llama'", config_edit=lambda c: c.update(model_type="llama")
    )
    _expect_error(
        tmp_path / "c",
        ValueError,
        "spatial cluster counts",
        config_edit=lambda c: c["config"].update(spatial_cluster_rate0=64),
    )
    # a 13B-shaped config.json given to the 7B config: the hint names the right config
    write_published_folder(
        tmp_path / "d",
        "chatunivi",
        config_edit=lambda c: c.update(
            hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40
        ),
    )
    with pytest.raises(ValueError, match="build it with the config 'chatunivi-13b'"):
        build_visa("chatunivi-7b", weights=tmp_path / "d", clip_weights=tmp_path / "d")


def test_chatunivi_folder_on_the_full_rung_needs_sam_weights(tmp_path):
    write_published_folder(tmp_path / "chatunivi", "chatunivi")
    with pytest.raises(ValueError, match="sam_weights=sam_vit_h_4b8939.pth"):
        build_visa(
            FULL.replace(sam="vit_b"), weights=tmp_path / "chatunivi", vision_tower=tiny_vision_tower()
        )


def test_full_rung_folder_needs_clip_weights(tmp_path):
    seven_b = {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
    }
    clusters = {"spatial_cluster_rate0": 64, "spatial_cluster_rate1": 32, "spatial_cluster_rate2": 16}
    write_published_folder(
        tmp_path / "c",
        "chatunivi",
        config_edit=lambda c: c.update(seven_b, num_key_value_heads=32, mm_hidden_size=1024, config=clusters),
    )
    with pytest.raises(ValueError, match="clip_weights= a local copy of openai/clip-vit-large-patch14"):
        build_visa("chatunivi-7b", weights=tmp_path / "c")


def test_export_writes_what_visa_reads_and_reads_back_identically(tmp_path):
    write_published_folder(tmp_path / "visa", "visa", dtype=torch.float32)
    model = build_visa(FULL, weights=tmp_path / "visa", vision_tower=tiny_vision_tower(), dtype="float32")
    export_visa_checkpoint(model, tmp_path / "out", max_shard_tensors=40)
    out = tmp_path / "out"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    names = index["weight_map"]
    assert index["metadata"]["total_size"] > 0  # transformers 4.31 reads index["metadata"]
    assert (
        "model.text_hidden_fcs.0.0.weight" in names
        and "model.visual_model.mask_decoder.iou_token.weight" in names
    )
    assert "model.layers.1.self_attn.rotary_emb.inv_freq" in names  # as VISA's merge script writes it
    assert not any(k.startswith("model.vision_tower") for k in names)
    config = json.loads((out / "config.json").read_text())
    for field, value in {
        "model_type": "ChatUniVi",
        "vision_tower": "toy",
        "mm_vision_tower": "toy",
        "mm_hidden_size": 32,
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "train_mask_decoder": True,
        "out_dim": 64,
        "vocab_size": SP_VOCAB + 1,
        "rope_scaling": None,
        "use_mm_proj": True,
    }.items():
        assert config[field] == value, field
    assert config["config"]["spatial_cluster_rate0"] == 8 and "rope_parameters" not in config
    assert json.loads((out / "added_tokens.json").read_text()) == {"[SEG]": SP_VOCAB}
    assert (out / "tokenizer.model").read_bytes() == (LLAMA_SP / "tokenizer.model").read_bytes()
    again = build_visa(FULL, weights=out, vision_tower=model.vision_tower, dtype="float32")
    clip = frames(3, seed=7)
    with torch.no_grad():
        a = model.segment(clip[:2], clip[2], ["the red circle", "the cat"])
        b = again.segment(clip[:2], clip[2], ["the red circle", "the cat"])
    assert torch.equal(a, b)


def test_bfloat16_is_the_default_for_folders_and_float32_stays_available(tmp_path):
    write_published_folder(tmp_path / "visa", "visa")
    model = _build(tmp_path / "visa", check_trained=False)
    for part in (
        model.causal_lm.lm_head,
        model.projector,
        model.seg_head[0],
        model.sam.mask_decoder.iou_token,
    ):
        assert part.weight.dtype == torch.bfloat16
    assert model.merger.dtype is None  # merge in the tokens' dtype, as VISA
    fp32_merge = _build(tmp_path / "visa", check_trained=False, merge_dtype="float32")
    assert fp32_merge.merger.dtype == torch.float32
    clip = frames(3)
    for m in (model, fp32_merge):
        logits = m.segment(clip[:2], clip[2], "the red circle")
        assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_export_of_a_toy_model_reads_back(tmp_path):
    model = build_tiny_visa(seed=5)
    with torch.no_grad():
        model.seg_head[0].weight.mul_(4.0)
    export_visa_checkpoint(model, tmp_path / "out")
    again = build_visa(
        FULL, weights=tmp_path / "out", vision_tower=model.vision_tower, dtype="float32", seed=5
    )
    clip = frames(3, seed=7)
    with torch.no_grad():
        assert torch.equal(
            model.segment(clip[:2], clip[2], "the cat"), again.segment(clip[:2], clip[2], "the cat")
        )


def test_own_format_round_trip_with_saved_vocabulary(tmp_path):
    model = build_tiny_visa(seed=6)
    with torch.no_grad():
        model.seg_head[2].weight.mul_(5.0)
        model.sam.mask_decoder.iou_token.weight.add_(0.3)
    path = save_visa_weights(model, tmp_path / "w.safetensors", extra={"note": "test"})
    meta = read_visa_weights_metadata(path)
    assert meta["vocab"][-1] == "[SEG]" and meta["extra"] == {"note": "test"}
    assert meta["components"] == ["llm", "projector", "seg_head", "sam.mask_decoder"]
    fresh = build_visa(
        TINY, weights=path, pretrained=False, vision_tower=model.vision_tower, sam=_same_sam(model)
    )
    clip = frames(3, seed=8)
    with torch.no_grad():
        assert torch.allclose(
            model.segment(clip[:2], clip[2], "the cat"),
            fresh.segment(clip[:2], clip[2], "the cat"),
            atol=1e-5,
        )


def _same_sam(model):
    sam = build_sam("toy", pretrained=False)
    sam.load_state_dict(model.sam.state_dict())
    return sam


def test_own_format_refuses_other_tokenizers_and_flags_changed_foundations(tmp_path):
    model = build_tiny_visa(seed=6)
    path = save_visa_weights(model, tmp_path / "w.safetensors")
    other = build_tiny_visa(seed=6)
    other.tokenizer = build_toy_tokenizer(extra_words=["zebra"])
    with pytest.raises(ValueError, match="tokenizer differs"):
        load_visa_weights(other, path, check_trained=False)
    changed = build_tiny_visa(seed=6, vision_tower=tiny_vision_tower())
    with torch.no_grad():
        changed.vision_tower.clip.embeddings.patch_embedding.weight.add_(1.0)
    with pytest.warns(UntrainedWeightsWarning, match="different"):
        load_visa_weights(changed, path, check_trained=False)
    with pytest.raises(ValueError, match="not a visa_lib weights file"):
        save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
        read_visa_weights_metadata(tmp_path / "plain.safetensors")


def test_untrained_decoder_is_detected_against_the_base_sam():
    model = build_tiny_visa(seed=2)
    base = {k: v.clone() for k, v in model.sam.mask_decoder.state_dict().items()}
    reasons = untrained_reasons(model, base)
    assert any("default random" in r for r in reasons) and any("never fine-tuned" in r for r in reasons)
    with torch.no_grad():
        model.seg_head[0].weight.mul_(3.0)
        model.sam.mask_decoder.iou_token.weight.add_(0.1)
    assert untrained_reasons(model, base) == []
    assert np.isfinite(float(model.seg_head[0].weight.detach().std()))
