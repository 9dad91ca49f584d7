"""Checkpoint loaders against synthetic checkpoints with the real key names (tiny shapes)."""

import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from test_visa_model import TINY, build_tiny_visa, frames, tiny_vision_tower
from transformers import LlamaConfig, LlamaForCausalLM

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


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is fastest


def _llama_state(vocab: int, seed: int) -> tuple[dict, LlamaConfig]:
    cfg = TINY.llama_config(vocab_size=vocab)
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in LlamaForCausalLM(cfg).state_dict().items()}, cfg


def _write(folder, state: dict, cfg: LlamaConfig, with_seg: bool, fmt: str = "safetensors", shards: int = 2):
    """A Hugging Face style folder: config.json (model_type ChatUniVi), tokenizer, sharded weights."""
    folder.mkdir(parents=True, exist_ok=True)
    config = cfg.to_dict() | {"model_type": "ChatUniVi", "mm_hidden_size": 32}
    (folder / "config.json").write_text(json.dumps(config, default=str))
    build_toy_tokenizer(with_seg=with_seg).save_pretrained(str(folder))
    keys = sorted(state)
    if fmt == "bin":
        torch.save(state, folder / "pytorch_model.bin")
        return
    chunks = [keys[i::shards] for i in range(shards)]
    weight_map = {}
    for i, chunk in enumerate(chunks):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: state[k].contiguous() for k in chunk}, str(folder / name))
        weight_map.update(dict.fromkeys(chunk, name))
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )


def chatunivi_state(seed: int = 3) -> tuple[dict, LlamaConfig]:
    """Chat-UniVi's layout: LLaMA keys + model.mm_projector.* (vocabulary without [SEG])."""
    vocab = len(build_toy_tokenizer(with_seg=False))
    state, cfg = _llama_state(vocab, seed)
    state["model.mm_projector.weight"] = torch.randn(32, 32) * 0.1
    state["model.mm_projector.bias"] = torch.randn(32) * 0.1
    return state, cfg


def visa_state(seed: int = 4) -> tuple[dict, LlamaConfig]:
    """Merged VISA layout (reference §4.2): vocabulary +1 for [SEG], SAM and text_hidden_fcs."""
    state, cfg = _llama_state(len(build_toy_tokenizer()), seed)
    torch.manual_seed(seed)
    state["model.mm_projector.weight"] = torch.randn(32, 32) * 0.1
    state["model.mm_projector.bias"] = torch.randn(32) * 0.1
    sam = build_sam("toy", pretrained=False)
    with torch.no_grad():
        sam.mask_decoder.iou_token.weight.add_(1.0)  # differ from a fresh SAM
    state.update({f"model.visual_model.{k}": v.clone() for k, v in sam.state_dict().items()})
    state["model.text_hidden_fcs.0.0.weight"] = torch.randn(32, 32) * 0.5  # trained-looking values
    state["model.text_hidden_fcs.0.0.bias"] = torch.randn(32) * 0.5
    state["model.text_hidden_fcs.0.2.weight"] = torch.randn(64, 32) * 0.5
    state["model.text_hidden_fcs.0.2.bias"] = torch.randn(64) * 0.5
    return state, cfg


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
    with pytest.raises(CheckpointKeyError, match="un-merged LoRA"):
        checkpoint_key_to_module("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight")


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_chatunivi_checkpoint_loads_and_resizes_for_seg(tmp_path, fmt):
    state, cfg = chatunivi_state()
    assert "model.layers.1.mlp.down_proj.weight" in state and "lm_head.weight" in state
    _write(tmp_path / "ckpt", state, cfg, with_seg=False, fmt=fmt)
    with pytest.warns(UntrainedWeightsWarning, match="default random initialisation"):
        model = build_visa(
            FULL,
            checkpoint=tmp_path / "ckpt",
            vision_tower=tiny_vision_tower(),
            sam=build_sam("toy", pretrained=False),
        )
    vocab = cfg.vocab_size
    assert model.seg_token_id == vocab and len(model.tokenizer) == vocab + 1
    embed = model.causal_lm.get_input_embeddings().weight
    assert embed.shape[0] == vocab + 1
    assert torch.equal(embed[:vocab], state["model.embed_tokens.weight"])
    assert torch.equal(
        model.causal_lm.model.layers[1].mlp.down_proj.weight, state["model.layers.1.mlp.down_proj.weight"]
    )
    assert torch.equal(model.projector.weight, state["model.mm_projector.weight"])
    clip = frames(3)
    assert model.segment(clip[:2], clip[2], "the red circle").shape == (1, 48, 64)


def test_merged_visa_checkpoint_loads_everything(tmp_path):
    state, cfg = visa_state()
    _write(tmp_path / "visa", state, cfg, with_seg=True, shards=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)
        model = build_visa(FULL, checkpoint=tmp_path / "visa", vision_tower=tiny_vision_tower())
    assert torch.equal(model.seg_head[2].weight, state["model.text_hidden_fcs.0.2.weight"])
    sam_state = model.sam.state_dict()
    for key in (
        "mask_decoder.iou_token.weight",
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
        "image_encoder.blocks.0.attn.qkv.weight",
    ):
        assert torch.equal(sam_state[key], state[f"model.visual_model.{key}"])
    assert torch.equal(model.causal_lm.lm_head.weight, state["lm_head.weight"])


def _expect_error(tmp_path, state, cfg, error, match, with_seg=True):
    _write(tmp_path / "bad", state, cfg, with_seg=with_seg)
    with pytest.raises(error, match=match):
        build_visa(
            FULL,
            checkpoint=tmp_path / "bad",
            vision_tower=tiny_vision_tower(),
            sam=build_sam("toy", pretrained=False),
            check_trained=False,
        )


def test_missing_llm_key_is_named(tmp_path):
    state, cfg = visa_state()
    del state["model.layers.1.mlp.up_proj.weight"]
    _expect_error(tmp_path, state, cfg, CheckpointKeyError, r"model\.layers\.1\.mlp\.up_proj\.weight")


def test_missing_seg_head_key_is_named_with_checkpoint_spelling(tmp_path):
    state, cfg = visa_state()
    del state["model.text_hidden_fcs.0.2.bias"]
    _expect_error(tmp_path, state, cfg, CheckpointKeyError, r"model\.text_hidden_fcs\.0\.2\.bias")


@pytest.mark.parametrize("key", ["model.foo.weight", "vision_model.encoder.weight"])
def test_unexpected_keys_are_named(tmp_path, key):
    state, cfg = chatunivi_state()
    state[key] = torch.zeros(2)
    _expect_error(tmp_path, state, cfg, CheckpointKeyError, key.replace(".", r"\."), with_seg=False)


def test_shape_mismatch_and_wrong_size_config_are_explained(tmp_path):
    state, cfg = chatunivi_state()
    state["model.mm_projector.weight"] = torch.zeros(32, 16)
    _expect_error(tmp_path, state, cfg, ValueError, "projector.weight", with_seg=False)
    state, cfg = chatunivi_state()
    cfg.intermediate_size = 48
    _expect_error(tmp_path / "cfg", state, cfg, ValueError, "intermediate_size = 48", with_seg=False)


def test_export_then_load_reproduces_the_model(tmp_path):
    model = build_tiny_visa(seed=5)
    with torch.no_grad():
        model.seg_head[0].weight.mul_(4.0)
    export_visa_checkpoint(model, tmp_path / "out", max_shard_tensors=40)
    names = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())["weight_map"]
    assert (
        "model.text_hidden_fcs.0.0.weight" in names
        and "model.visual_model.mask_decoder.iou_token.weight" in names
    )
    assert not any(k.startswith("model.vision_tower") for k in names)
    model.tokenizer.save_pretrained(str(tmp_path / "out"))
    again = build_visa(FULL, checkpoint=tmp_path / "out", vision_tower=model.vision_tower)
    clip = frames(3, seed=7)
    with torch.no_grad():
        a = model.segment(clip[:2], clip[2], ["the red circle", "the cat"])
        b = again.segment(clip[:2], clip[2], ["the red circle", "the cat"])
    assert torch.allclose(a, b, atol=1e-5)


def test_bfloat16_loading(tmp_path):
    state, cfg = chatunivi_state()
    _write(tmp_path / "ckpt", state, cfg, with_seg=False)
    model = build_visa(
        FULL.replace(dtype="bfloat16"),
        checkpoint=tmp_path / "ckpt",
        check_trained=False,
        vision_tower=tiny_vision_tower(),
        sam=build_sam("toy", pretrained=False),
    )
    assert model.causal_lm.lm_head.weight.dtype == torch.bfloat16
    assert model.projector.weight.dtype == torch.bfloat16
    clip = frames(3)
    logits = model.segment(clip[:2], clip[2], "the red circle")
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


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
