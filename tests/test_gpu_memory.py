"""Memory estimates from the config, checked against real parameter counts (toy model, meta-device giants)."""

import pytest
import torch
from test_visa_model import TINY, build_tiny_visa
from transformers import CLIPVisionModel, LlamaForCausalLM

from visa_lib.model.build import build_visa
from visa_lib.model.configs import get_config
from visa_lib.model.gpu_memory import (
    NF4_BYTES,
    clip_vision_parameter_count,
    lora_parameter_count,
    measured_parameter_counts,
    model_memory_report,
    parameter_counts,
    sam_parameter_counts,
)
from visa_lib.model.sam import SAM_SPECS, build_sam
from visa_lib.model.vision import VISION_CONFIGS
from visa_lib.train.trainable import prepare_for_training


def test_toy_model_counts_match_formulas_exactly():
    model = build_visa("toy", weights=None, pretrained=False, check_trained=False)
    assert measured_parameter_counts(model) == parameter_counts("toy", vocab_size=len(model.tokenizer))


@pytest.mark.parametrize("name", ["chatunivi-7b", "chatunivi-13b"])
def test_llm_formula_matches_meta_device_model(name):
    config = get_config(name)
    with torch.device("meta"):
        llm = LlamaForCausalLM(config.llama_config(vocab_size=32001))
    counts = parameter_counts(config)
    assert sum(v for k, v in counts.items() if k.startswith("llm.")) == sum(
        p.numel() for p in llm.parameters()
    )
    assert counts["llm.embed_tokens"] == 32001 * config.llm.hidden_size


def test_7b_llm_is_about_6_7_billion_parameters():
    counts = parameter_counts("chatunivi-7b")
    llm = sum(v for k, v in counts.items() if k.startswith("llm."))
    assert 6.73e9 < llm < 6.75e9  # LLaMA-7B 6,738,415,616 + one [SEG] row in embed and lm_head


@pytest.mark.parametrize("name", ["vit_h", "vit_b"])
def test_sam_formula_matches_meta_device_model(name):
    with torch.device("meta"):
        sam = build_sam(name, pretrained=False)
    real = {
        part: sum(p.numel() for p in getattr(sam, part).parameters())
        for part in ("image_encoder", "prompt_encoder", "mask_decoder")
    }
    assert sam_parameter_counts(SAM_SPECS[name]) == real


def test_clip_formula_matches_meta_device_model():
    cfg = VISION_CONFIGS["clip-vit-large-patch14"]()
    with torch.device("meta"):
        clip = CLIPVisionModel(cfg)
    formula = clip_vision_parameter_count(
        cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.image_size, cfg.patch_size
    )
    assert formula == sum(p.numel() for p in clip.parameters()) == 303_179_776


def test_bytes_follow_dtype_and_quantisation():
    bf16 = model_memory_report("chatunivi-7b")
    fp32 = model_memory_report("chatunivi-7b", dtype="float32")
    int8 = model_memory_report("chatunivi-7b", load_in_8bit=True)
    nf4 = model_memory_report("chatunivi-7b", load_in_4bit=True)
    linear = parameter_counts("chatunivi-7b")["llm.decoder_linear"]
    row = {r.component: r for r in nf4.rows}
    assert row["llm.decoder_linear"].bytes == pytest.approx(linear * NF4_BYTES)
    assert row["llm.lm_head"].storage == "bfloat16" and row["sam.image_encoder"].storage == "bfloat16"
    assert fp32.gib("llm.decoder_linear") == pytest.approx(2 * bf16.gib("llm.decoder_linear"))
    assert nf4.total_bytes < int8.total_bytes < bf16.total_bytes < fp32.total_bytes
    assert 14.0 < bf16.gib() < 15.0  # 7.7 B parameters in bf16 (SAM-H too, as VISA runs it)
    assert "total (weights)" in bf16.to_text()


def test_lora_count_matches_peft():
    model = build_tiny_visa()
    prepare_for_training(model, mode="lora")
    real = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert real == lora_parameter_count(TINY) == 2 * 2 * 8 * (32 + 32)
