"""VisaModel on tiny parts: the multimodal sequence, where [SEG] is read, SAM decoding, losses, training."""

import numpy as np
import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from visa_lib.model.build import build_visa
from visa_lib.model.configs import CONFIGS, LlmDims, VisaConfig, get_config
from visa_lib.model.prompts import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from visa_lib.model.sam import build_sam
from visa_lib.model.vision import VisionTower
from visa_lib.train.losses import dice_loss, sigmoid_ce_loss, visa_loss
from visa_lib.train.step import VisaSample, sample_forward, training_step
from visa_lib.train.trainable import merge_lora, prepare_for_training

TINY = VisaConfig(
    name="tiny",
    llm=LlmDims(
        vocab_size=0,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
    ),
    vision_tower="toy",
    vision_hidden_size=32,
    sam="toy",
    prompt_dim=64,
    tokenizer="toy",
    cluster_nums=(8, 4, 2),
    cluster_ks=(3, 3, 3),
)


def tiny_vision_tower() -> VisionTower:
    """CLIP geometry (224 px, patch 14 -> 256 tokens), 32 wide, random weights."""
    cfg = CLIPVisionConfig(
        image_size=224,
        patch_size=14,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
    )
    torch.manual_seed(0)
    return VisionTower(CLIPVisionModel(cfg), name="toy")


def build_tiny_visa(seed: int = 0, **kwargs):
    """A complete VISA model small enough for unit tests (~0.5 s per forward)."""
    torch.manual_seed(seed)
    parts = {"vision_tower": tiny_vision_tower(), "sam": build_sam("toy", pretrained=False)}
    parts.update(kwargs)
    return build_visa(TINY, weights=None, pretrained=False, check_trained=False, seed=seed, **parts)


def frames(n: int, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is fastest


@pytest.fixture(scope="module")
def model():
    return build_tiny_visa()


def test_registry_names_and_knobs():
    assert get_config("chatunivi-7b").tokens_per_frame == 112 and get_config("toy").tokens_per_frame == 28
    assert (
        get_config("chatunivi-7b").llm.hidden_size == 4096
        and get_config("chatunivi-13b").llm.hidden_size == 5120
    )
    assert get_config("chatunivi-7b", cluster_nums=(32, 16, 8)).tokens_per_frame == 56
    with pytest.raises(KeyError, match="chatunivi-7b"):
        get_config("llava")
    with pytest.raises(ValueError, match="OR"):  # runtime knobs are build arguments, checked there
        build_visa("toy", load_in_8bit=True, load_in_4bit=True)
    assert not hasattr(CONFIGS["chatunivi-7b"], "dtype")


def test_image_tokens_and_expanded_sequence(model):
    clip = frames(4)
    tokens = model.encode_images(clip)
    assert tokens.shape == (4, 14, 32)  # 8 + 4 + 2 merged tokens of width C = 32
    conv = model.tokenize(["the red circle", "which shape moves fastest?"], num_references=3)
    inputs = model.embed_multimodal(conv.input_ids, tokens, conv.attention_mask, conv.labels)
    lengths = conv.attention_mask.sum(1)
    # every <image> id (one position) becomes 14 embeddings: +13 per image, 4 images
    assert inputs.attention_mask.sum(1).tolist() == (lengths + 4 * 13).tolist()
    assert inputs.inputs_embeds.shape[:2] == inputs.expanded_ids.shape
    for row, spans in enumerate(inputs.image_spans):
        assert len(spans) == 4 and all(e - s == 14 for s, e in spans)
        for k, (s, e) in enumerate(spans):
            assert (inputs.expanded_ids[row, s:e] == IMAGE_TOKEN_INDEX).all()
            assert (inputs.labels[row, s:e] == IGNORE_INDEX).all()
            projected = model.projector(tokens[k])
            assert torch.allclose(inputs.inputs_embeds[row, s:e], projected, atol=1e-6)


def test_seg_is_read_one_before_seg_at_the_expanded_position(model):
    conv = model.tokenize(["the red circle", "the cat"], num_references=2)
    tokens = model.encode_images(frames(3))
    inputs = model.embed_multimodal(conv.input_ids, tokens, conv.attention_mask)
    rows, positions = model.seg_read_positions(inputs.expanded_ids)
    assert rows.tolist() == [0, 1]
    for row, pos in zip(rows.tolist(), positions.tolist(), strict=True):
        raw_seg = (conv.input_ids[row] == model.seg_token_id).nonzero().item()
        # VISA's inference rule with the real per-image growth (13 here, 111 on the full rung)
        assert pos == raw_seg - 1 + 3 * (model.tokens_per_frame - 1)
        assert inputs.expanded_ids[row, pos + 1] == model.seg_token_id
        assert model.tokenizer.convert_ids_to_tokens(int(inputs.expanded_ids[row, pos])) == "is"


@torch.no_grad()
def test_seg_hidden_is_the_post_norm_last_layer_state(model):
    clip = frames(3)
    conv = model.tokenize(["the red circle"], num_references=2)
    tokens = model.encode_images(clip)
    out = model(conv.input_ids, tokens, model.encode_sam_image(clip[-1]), conv.attention_mask)
    full = model.causal_lm(
        inputs_embeds=out.inputs.inputs_embeds,
        attention_mask=out.inputs.attention_mask.long(),
        output_hidden_states=True,
    )
    expected = full.hidden_states[-1][0, out.seg_positions[0]]
    assert torch.allclose(out.seg_hidden[0], expected, atol=1e-5)
    assert torch.allclose(out.seg_embeddings, model.seg_head(out.seg_hidden), atol=1e-6)
    assert out.seg_embeddings.shape == (1, 64)


@torch.no_grad()
def test_masks_do_not_depend_on_padding_or_batch_companions(model):
    clip = frames(4, seed=1)
    together = model.segment(clip[:3], clip[3], ["the red circle", "which shape is the biggest?"])
    alone = model.segment(clip[:3], clip[3], "the red circle")
    assert together.shape == (2, 48, 64) and together.dtype == torch.float32
    assert torch.allclose(together[0], alone[0], atol=1e-4)
    assert not torch.allclose(together[0], together[1])


def test_wrong_inputs_raise_clear_errors(model):
    conv = model.tokenize("the red circle", num_references=2)
    with pytest.raises(ValueError, match="3 <image> slots but 2 images"):
        model.embed_multimodal(conv.input_ids, model.encode_images(frames(2)))
    with pytest.raises(ValueError, match="uint8"):
        model.encode_images(np.zeros((2, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="empty"):
        model.segment(frames(2), frames(1)[0], "  ")


def test_generate_decodes_masks_for_generated_seg_tokens(model):
    clip = frames(3)
    lm_head = model.causal_lm.lm_head

    def force_seg(_module, _inputs, output):
        output = output.clone()
        output[..., model.seg_token_id] += 1e4
        return output

    handle = lm_head.register_forward_hook(force_seg)
    try:
        result = model.generate(clip[:2], clip[2], "the red circle", max_new_tokens=3)
    finally:
        handle.remove()
    assert result.token_ids == [model.seg_token_id] * 3
    assert result.mask_logits.shape == (3, 48, 64)
    plain = model.generate(clip[:2], clip[2], "the red circle", max_new_tokens=2)
    assert len(plain.token_ids) <= 2 and isinstance(plain.text, str)


def test_losses_match_hand_computation():
    logits = torch.tensor([[[2.0, -1.0], [0.5, -3.0]], [[-2.0, -2.0], [-2.0, -2.0]]])
    gt = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    p = logits.sigmoid()
    bce = -(gt * p.log() + (1 - gt) * (1 - p).log()).mean((1, 2)).mean()
    assert torch.allclose(sigmoid_ce_loss(logits, gt), bce, atol=1e-6)
    inter, sums = (p * gt).sum((1, 2)), p.sum((1, 2)) + gt.sum((1, 2))
    dice = (1 - (2 * inter + 1e-3) / (sums + 1e-3)).mean()  # VISA's scale 1000 / eps 1e-6, unscaled
    assert torch.allclose(dice_loss(logits, gt), dice, atol=1e-5)
    total = visa_loss(torch.tensor(0.7), logits, gt)
    assert torch.allclose(total.total, 0.7 + 2.0 * bce + 0.5 * dice, atol=1e-5)
    perfect = torch.where(gt > 0, 20.0, -20.0)
    assert dice_loss(perfect, gt) < 1e-3 and sigmoid_ce_loss(perfect, gt) < 1e-6
    with pytest.raises(ValueError, match="differ"):
        dice_loss(logits, gt[:, :1])


def test_lora_recipe_trains_the_right_parameters():
    model = build_tiny_visa()
    counts = prepare_for_training(model, mode="lora")
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n and "q_proj" in n for n in names) and any(
        "lora_B" in n and "v_proj" in n for n in names
    )
    assert not any(n.startswith("llm.") and ("k_proj" in n or "o_proj" in n or "mlp" in n) for n in names)
    assert any("embed_tokens" in n for n in names) and any("lm_head" in n for n in names)
    assert set(counts) == {"llm", "seg_head", "sam"}
    assert counts["sam"] == sum(p.numel() for p in model.sam.mask_decoder.parameters())
    clip = frames(3)
    sample = VisaSample(clip[:2], clip[2], ["the red circle"], np.zeros((1, 48, 64), bool))
    loss, _ = sample_forward(model, sample)
    loss.total.backward()
    assert model.seg_head[0].weight.grad is not None and model.seg_head[0].weight.grad.abs().sum() > 0
    assert model.causal_lm.get_input_embeddings().weight.grad[model.seg_token_id].abs().sum() > 0
    assert all(p.grad is None for p in model.vision_tower.parameters())
    assert all(p.grad is None for p in model.sam.image_encoder.parameters())
    assert all(p.grad is None for p in model.projector.parameters())
    merge_lora(model)
    assert model.llm is model.causal_lm and not any("lora" in n for n, _ in model.named_parameters())


def box_sample(model, box: tuple[int, int, int, int]):
    """3 random frames, a GT box ``(y0, y1, x0, x1)`` on the last, and the cached ``VisaSample`` of them."""
    clip = frames(3, seed=2)
    gt = np.zeros((1, 48, 64), bool)
    gt[0, box[0] : box[1], box[2] : box[3]] = True
    sample = VisaSample(clip[:2], clip[2], ["the red circle"], gt)
    sample.image_tokens = model.encode_images(clip)
    sample.sam_image = model.encode_sam_image(clip[2])
    return clip, gt, sample


def test_a_few_steps_fit_one_sample():
    torch.manual_seed(0)
    model = build_tiny_visa(seed=1)
    prepare_for_training(model, mode="full", train_projector=True)
    clip, gt, sample = box_sample(model, (10, 30, 20, 44))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.0, betas=(0.9, 0.95))
    first = training_step(model, [sample], optimizer)
    for _ in range(45):
        last = training_step(model, [sample], optimizer)
    assert last["total"] < 0.5 * first["total"]
    assert last["ce"] < first["ce"] and last["dice"] < first["dice"]
    model.eval()
    with torch.no_grad():
        pred = model.segment(clip[:2], clip[2], "the red circle")[0] > 0
    iou = (pred.numpy() & gt[0]).sum() / (pred.numpy() | gt[0]).sum()
    assert iou > 0.7


def test_quantised_loading_without_bitsandbytes_says_what_to_install():
    pytest.importorskip("transformers")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("bitsandbytes is installed here")
    with pytest.raises(ImportError, match=r"pip install visa_lib\[full\]"):
        build_visa("chatunivi-7b", load_in_4bit=True, weights=None)


def test_gradient_checkpointing_still_trains_the_adapters():
    torch.manual_seed(0)
    model = build_visa(
        TINY,
        gradient_checkpointing=True,
        weights=None,
        pretrained=False,
        check_trained=False,
        vision_tower=tiny_vision_tower(),
        sam=build_sam("toy", pretrained=False),
    )
    assert model.causal_lm.is_gradient_checkpointing
    prepare_for_training(model, mode="lora")
    clip = frames(3)
    loss, _ = sample_forward(model, VisaSample(clip[:2], clip[2], ["the cat"], np.zeros((1, 48, 64), bool)))
    loss.total.backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_grads and all(g is not None for g in lora_grads)


def test_free_answers_give_a_text_only_sample(model):
    conv = model.tokenize(["the red circle"], 2, answers=["It is the red circle."])
    kept = [t for t in conv.labels[0].tolist() if t != IGNORE_INDEX]
    assert model.tokenizer.convert_ids_to_tokens(kept) == ["it", "is", "the", "red", "circle", ".", "</s>"]
    clip = frames(3)
    sample = VisaSample(
        clip[:2], clip[2], ["the red circle"], np.zeros((0, 48, 64), bool), answers=["It is the red circle."]
    )
    loss, out = sample_forward(model, sample)
    assert out.mask_logits.shape == (0, 48, 64) and float(loss.bce) == 0.0 and float(loss.ce) > 0
    with pytest.raises(ValueError, match="one answer per expression"):
        model.tokenize(["a", "b"], 2, answers=["It is a."])


def test_warmup_answer_names_the_target_objects():
    from visa_lib.train.target_descriptions import NO_TARGET_ANSWER, target_answer

    descriptions = ["cat", "red square", "cat"]
    assert target_answer(descriptions, [2]) == "It is red square."
    assert target_answer(descriptions, [1, 3]) == "It is cat."  # one name for two cats
    assert target_answer(descriptions, [3, 2]) == "It is cat and red square."
    assert target_answer(descriptions, []) == NO_TARGET_ANSWER


def test_object_descriptions_are_regenerated_for_a_generated_split(tmp_path):
    from visa_lib.data.reasonvos_lite.generator import generate_split
    from visa_lib.data.revos import load_revos
    from visa_lib.train.target_descriptions import generated_object_descriptions

    generate_split(tmp_path, "train", seed=3, num_videos=2, progress=False)  # default video lengths
    split = load_revos(tmp_path, "train")
    found = generated_object_descriptions(split, "train", seed=3, progress=False)
    assert list(found) == list(split.videos)
    for name, descs in found.items():
        assert descs[0].split()[-1] == name.split("_")[-2]  # the video is named after its first object
        used = {i for e in split.videos[name].expressions.values() for i in e.obj_ids}
        assert used <= set(range(1, len(descs) + 1))
    from visa_lib.train.revos_samples import drop_no_target_expressions

    # the trainer drops the no-target expressions before asking for the descriptions
    assert generated_object_descriptions(drop_no_target_expressions(split), "train", seed=3) == found
    with pytest.raises(ValueError, match="pass the seed and frame range"):
        generated_object_descriptions(split, "train", seed=4, progress=False)


def test_warmup_answer_accuracy_compares_the_greedy_answer_with_the_target(tmp_path, monkeypatch):
    from visa_lib.data.reasonvos_lite.generator import generate_split
    from visa_lib.data.revos import load_revos
    from visa_lib.model.visa import GenerationResult
    from visa_lib.train.revos_samples import pick_target_frames
    from visa_lib.train.target_descriptions import (
        generated_object_descriptions,
        target_answer,
        warmup_answer_accuracy,
    )

    generate_split(tmp_path, "valid", seed=3, num_videos=1, progress=False)
    split = load_revos(tmp_path, "valid")
    descriptions = generated_object_descriptions(split, "valid", seed=3, progress=False)
    items = pick_target_frames(split)
    model = build_visa("toy", weights=None, check_trained=False)
    untrained = warmup_answer_accuracy(model, split, descriptions, items, progress=False)
    assert untrained == 0.0  # a random LLM does not write "It is cat."
    truth = {}
    for video, exp_id, _ in items:
        exp = split.videos[video].expressions[exp_id]
        truth[" ".join(exp.text.lower().split())] = target_answer(descriptions[video], exp.obj_ids)

    def oracle(refs, target, query, **kwargs):  # answers right, with other spacing and case
        return GenerationResult(" " + truth[query].upper(), [], None)

    monkeypatch.setattr(model, "generate", oracle)
    assert warmup_answer_accuracy(model, split, descriptions, items, progress=False) == 1.0


def test_shipped_toy_visa_segments_the_queried_object():
    """The shipped toy VISA learnt: far above the same model untrained, on validation target frames."""
    import warnings

    from visa_lib.data.revos import load_revos
    from visa_lib.model.checkpoints import UntrainedWeightsWarning
    from visa_lib.paths import REASONVOS_LITE
    from visa_lib.train.revos_samples import pick_target_frames, target_frame_scores

    valid = load_revos(REASONVOS_LITE, "valid")
    items = pick_target_frames(valid, max_items=24)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)  # the shipped head must look trained
        trained = build_visa("toy")
    with pytest.warns(UntrainedWeightsWarning):
        untrained = build_visa("toy", weights=None)
    t_iou = np.array([s.iou for s in target_frame_scores(trained, valid, items, progress=False)])
    u_iou = np.array([s.iou for s in target_frame_scores(untrained, valid, items, progress=False)])
    assert t_iou.mean() > u_iou.mean() + 0.15, (t_iou.mean(), u_iou.mean())
    assert (t_iou > 0.5).mean() > 0.3  # a good mask for a third of the queries, not just partial overlap
