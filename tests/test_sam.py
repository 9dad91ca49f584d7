"""Tests for visa_lib.model.sam: SAM pre/post-processing, VISA's embedding-prompted decode, strict loading."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from visa_lib.model import sam as sam_mod
from visa_lib.model.sam import (
    PIXEL_MEAN,
    PIXEL_STD,
    SAM_SPECS,
    build_sam,
    center_point,
    decode_from_embeddings,
    decode_from_prompts,
    encode_frames,
    load_sam_state_dict,
    masks_from_logits,
    postprocess_masks,
    preprocess_for_sam,
    read_checkpoint,
    resized_size,
    sam_prompt_dim,
    save_sam,
)

# A vit_h *layout* (32 blocks, global attention at 7/15/23/31, same key names) at tiny widths.
TINY_VIT_H = dataclasses.replace(
    SAM_SPECS["vit_h"],
    encoder_embed_dim=16,
    encoder_num_heads=2,
    img_size=64,
    window_size=2,
    prompt_embed_dim=32,
    decoder_mlp_dim=24,
    decoder_num_heads=2,
    iou_head_hidden_dim=8,
)
TINY_VIT_B = dataclasses.replace(TINY_VIT_H, encoder_depth=12, encoder_global_attn_indexes=(2, 5, 8, 11))
# Small enough for fast decode tests; same structure as the toy.
SMALL = dataclasses.replace(
    SAM_SPECS["toy"], encoder_embed_dim=16, encoder_depth=2, encoder_num_heads=2,
    encoder_global_attn_indexes=(1,), img_size=64, patch_size=16, window_size=2, prompt_embed_dim=32,
    decoder_mlp_dim=32, decoder_num_heads=2, iou_head_hidden_dim=16,
)  # fmt: skip


def official_layout(spec: sam_mod.SamSpec) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of Meta's ``sam_vit_*.pth`` written out by hand from the checkpoint layout.

    Independent of ``build_sam``: if the builder's sizes or module tree drift from the official
    files, the comparison below fails.
    """
    e, d, g = spec.encoder_embed_dim, spec.prompt_embed_dim, spec.img_size // spec.patch_size
    head = e // spec.encoder_num_heads
    m, mlp, hid = spec.mask_in_chans, spec.decoder_mlp_dim, spec.iou_head_hidden_dim
    out: dict[str, tuple[int, ...]] = {
        "image_encoder.pos_embed": (1, g, g, e),
        "image_encoder.patch_embed.proj.weight": (e, 3, spec.patch_size, spec.patch_size),
        "image_encoder.patch_embed.proj.bias": (e,),
    }
    for i in range(spec.encoder_depth):
        b = f"image_encoder.blocks.{i}."
        span = g if i in spec.encoder_global_attn_indexes else spec.window_size
        for norm in ("norm1", "norm2"):
            out[b + norm + ".weight"] = out[b + norm + ".bias"] = (e,)
        out[b + "attn.rel_pos_h"] = out[b + "attn.rel_pos_w"] = (2 * span - 1, head)
        out[b + "attn.qkv.weight"], out[b + "attn.qkv.bias"] = (3 * e, e), (3 * e,)
        out[b + "attn.proj.weight"], out[b + "attn.proj.bias"] = (e, e), (e,)
        out[b + "mlp.lin1.weight"], out[b + "mlp.lin1.bias"] = (4 * e, e), (4 * e,)
        out[b + "mlp.lin2.weight"], out[b + "mlp.lin2.bias"] = (e, 4 * e), (e,)
    out["image_encoder.neck.0.weight"] = (d, e, 1, 1)
    out["image_encoder.neck.1.weight"] = out["image_encoder.neck.1.bias"] = (d,)
    out["image_encoder.neck.2.weight"] = (d, d, 3, 3)
    out["image_encoder.neck.3.weight"] = out["image_encoder.neck.3.bias"] = (d,)

    p = "prompt_encoder."
    out[p + "pe_layer.positional_encoding_gaussian_matrix"] = (2, d // 2)
    for i in range(4):
        out[p + f"point_embeddings.{i}.weight"] = (1, d)
    out[p + "not_a_point_embed.weight"] = out[p + "no_mask_embed.weight"] = (1, d)
    md = p + "mask_downscaling."
    out[md + "0.weight"], out[md + "0.bias"] = (m // 4, 1, 2, 2), (m // 4,)
    out[md + "1.weight"] = out[md + "1.bias"] = (m // 4,)
    out[md + "3.weight"], out[md + "3.bias"] = (m, m // 4, 2, 2), (m,)
    out[md + "4.weight"] = out[md + "4.bias"] = (m,)
    out[md + "6.weight"], out[md + "6.bias"] = (d, m, 1, 1), (d,)

    t = "mask_decoder.transformer."

    def attention(name: str, inner: int) -> None:
        for proj in ("q_proj", "k_proj", "v_proj"):
            out[f"{name}.{proj}.weight"], out[f"{name}.{proj}.bias"] = (inner, d), (inner,)
        out[f"{name}.out_proj.weight"], out[f"{name}.out_proj.bias"] = (d, inner), (d,)

    for i in range(spec.decoder_depth):
        layer = f"{t}layers.{i}."
        attention(layer + "self_attn", d)
        attention(layer + "cross_attn_token_to_image", d // 2)
        attention(layer + "cross_attn_image_to_token", d // 2)
        for norm in ("norm1", "norm2", "norm3", "norm4"):
            out[layer + norm + ".weight"] = out[layer + norm + ".bias"] = (d,)
        out[layer + "mlp.lin1.weight"], out[layer + "mlp.lin1.bias"] = (mlp, d), (mlp,)
        out[layer + "mlp.lin2.weight"], out[layer + "mlp.lin2.bias"] = (d, mlp), (d,)
    attention(t + "final_attn_token_to_image", d // 2)
    out[t + "norm_final_attn.weight"] = out[t + "norm_final_attn.bias"] = (d,)

    k = "mask_decoder."
    tokens = spec.num_multimask_outputs + 1
    out[k + "iou_token.weight"], out[k + "mask_tokens.weight"] = (1, d), (tokens, d)
    out[k + "output_upscaling.0.weight"], out[k + "output_upscaling.0.bias"] = (d, d // 4, 2, 2), (d // 4,)
    out[k + "output_upscaling.1.weight"] = out[k + "output_upscaling.1.bias"] = (d // 4,)
    out[k + "output_upscaling.3.weight"] = (d // 4, d // 8, 2, 2)
    out[k + "output_upscaling.3.bias"] = (d // 8,)
    for i in range(tokens):
        h = f"{k}output_hypernetworks_mlps.{i}.layers."
        out[h + "0.weight"], out[h + "0.bias"] = (d, d), (d,)
        out[h + "1.weight"], out[h + "1.bias"] = (d, d), (d,)
        out[h + "2.weight"], out[h + "2.bias"] = (d // 8, d), (d // 8,)
    h = k + "iou_prediction_head.layers."
    out[h + "0.weight"], out[h + "0.bias"] = (hid, d), (hid,)
    out[h + "1.weight"], out[h + "1.bias"] = (hid, hid), (hid,)
    out[h + "2.weight"], out[h + "2.bias"] = (tokens, hid), (tokens,)
    return out


def synthetic_checkpoint(spec: sam_mod.SamSpec, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=gen) for k, shape in official_layout(spec).items()}


@pytest.fixture(scope="module")
def small_sam():
    torch.manual_seed(0)
    return build_sam(SMALL)


# ---------------------------------------------------------------- preprocessing


@pytest.mark.parametrize(
    ("original", "size", "expected"),
    [((240, 320), 256, (192, 256)), ((1080, 1920), 1024, (576, 1024)), ((27, 50), 64, (35, 64)),
     ((50, 27), 64, (64, 35)), ((480, 854), 1024, (576, 1024))],
)  # fmt: skip
def test_resized_size_rounds_half_up(original, size, expected):
    # 27*64/50 = 34.56 -> 35; 480*1024/854 = 575.55 -> 576
    assert resized_size(original, size) == expected


def test_preprocess_matches_hand_computation():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (27, 50, 3), dtype=np.uint8)
    pixels, resized = preprocess_for_sam(frame, 64)
    assert pixels.shape == (1, 3, 64, 64) and pixels.dtype == torch.float32
    assert resized == (35, 64)
    # PIL bilinear resize to (w', h'), then per-channel normalisation, by hand.
    small = np.asarray(Image.fromarray(frame).resize((64, 35), Image.BILINEAR)).astype(np.float64)
    expected = (small - np.array(PIXEL_MEAN)) / np.array(PIXEL_STD)
    np.testing.assert_allclose(pixels[0, :, :35, :].permute(1, 2, 0).numpy(), expected, atol=1e-5)
    # Padding is bottom only here (width already 64) and exactly zero.
    assert torch.count_nonzero(pixels[0, :, 35:, :]) == 0


def test_preprocess_pads_right_and_normalises_constant_frame():
    frame = np.full((40, 20, 3), 200, np.uint8)
    pixels, resized = preprocess_for_sam(torch.from_numpy(np.stack([frame, frame])), 32)
    assert pixels.shape == (2, 3, 32, 32) and resized == (32, 16)
    for c in range(3):
        value = (200 - PIXEL_MEAN[c]) / PIXEL_STD[c]
        assert torch.allclose(pixels[:, c, :, :16], torch.tensor(value, dtype=torch.float32))
    assert torch.count_nonzero(pixels[..., 16:]) == 0


def test_preprocess_rejects_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        preprocess_for_sam(np.zeros((8, 8, 3), np.float32), 32)
    with pytest.raises(ValueError, match=r"\[H,W,3\]"):
        preprocess_for_sam(np.zeros((8, 8), np.uint8), 32)


# ---------------------------------------------------------------- postprocessing


def test_postprocess_equals_sam_and_round_trips_a_mask(small_sam):
    original, size = (48, 80), 64
    resized = resized_size(original, size)  # (38, 64)
    yy, xx = np.mgrid[: original[0], : original[1]]
    mask = ((yy - 24) ** 2 + (xx - 30) ** 2) < 15**2
    # Forward path of a mask through SAM's geometry: resize, pad, then down to the low-res grid.
    m = torch.from_numpy(mask).float()[None, None] * 20 - 10  # logits of +-10
    m = F.interpolate(m, resized, mode="bilinear", align_corners=False)
    m = F.pad(m, (0, size - resized[1], 0, size - resized[0]), value=-10)
    low = F.interpolate(m, (size // 4, size // 4), mode="bilinear", align_corners=False)
    back = postprocess_masks(low, resized, original)
    assert back.shape == (1, *original)
    reference = small_sam.postprocess_masks(low, resized, original)[:, 0]
    torch.testing.assert_close(back, reference)
    pred = masks_from_logits(back[0]).numpy()
    iou = (pred & mask).sum() / (pred | mask).sum()
    assert iou > 0.93, iou


def test_postprocess_empty_and_shape_errors():
    out = postprocess_masks(torch.zeros(0, 1, 16, 16), (64, 48), (100, 75))
    assert out.shape == (0, 100, 75)
    with pytest.raises(ValueError, match=r"\[N,1,h,w\]"):
        postprocess_masks(torch.zeros(2, 3, 16, 16), (64, 48), (100, 75))


# ---------------------------------------------------------------- decoding


def test_decode_shapes_with_prompts_sharing_one_image(small_sam):
    frames = np.random.default_rng(1).integers(0, 256, (2, 30, 40, 3), dtype=np.uint8)
    emb, resized, original = encode_frames(small_sam, frames, batch_size=1)
    assert emb.shape == (2, 32, 4, 4) and resized == (48, 64) and original == (30, 40)
    prompts = torch.randn(3, sam_prompt_dim(small_sam))
    with torch.no_grad():
        logits = decode_from_embeddings(small_sam, emb[:1], prompts, resized, original)
        alone = decode_from_embeddings(small_sam, emb[:1], prompts[1:2], resized, original)
        empty = decode_from_embeddings(small_sam, emb[:1], prompts[:0], resized, original)
    assert logits.shape == (3, 30, 40) and logits.dtype == torch.float32
    torch.testing.assert_close(logits[1:2], alone, atol=1e-5, rtol=1e-4)  # prompts are independent
    assert not torch.allclose(logits[0], logits[1])
    assert empty.shape == (0, 30, 40)
    with pytest.raises(ValueError, match="ONE image"):
        decode_from_embeddings(small_sam, emb, prompts, resized, original)
    with pytest.raises(ValueError, match=r"\[N,P,32\]"):
        decode_from_embeddings(small_sam, emb[:1], torch.randn(3, 7), resized, original)


def test_decode_equals_stock_prompt_encoder_path(small_sam):
    """VISA's text_embeds prompt == stock prompt encoder with no prompts + the embedding as sparse token."""
    emb = torch.randn(1, 32, 4, 4)
    prompts = torch.randn(2, 32)
    sparse0, dense = small_sam.prompt_encoder(points=None, boxes=None, masks=None)
    assert sparse0.shape == (1, 0, 32)
    sparse = torch.cat([sparse0.expand(2, -1, -1), prompts[:, None]], dim=1)
    with torch.no_grad():
        low, _ = small_sam.mask_decoder(emb, small_sam.prompt_encoder.get_dense_pe(), sparse,
                                        dense.expand(2, -1, -1, -1), multimask_output=False)  # fmt: skip
        ours = decode_from_embeddings(small_sam, emb, prompts, (64, 48), (64, 48))
    torch.testing.assert_close(ours, small_sam.postprocess_masks(low, (64, 48), (64, 48))[:, 0])


def test_gradients_reach_mask_decoder_and_prompts(small_sam):
    emb = torch.randn(1, 32, 4, 4)
    prompts = torch.randn(2, 32, requires_grad=True)
    small_sam.zero_grad()
    logits = decode_from_embeddings(small_sam, emb, prompts, (48, 64), (30, 40))
    loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    loss.backward()
    assert prompts.grad is not None and prompts.grad.abs().sum() > 0
    grads = [p.grad for p in small_sam.mask_decoder.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None for p in small_sam.image_encoder.parameters())
    small_sam.zero_grad()


def test_decode_from_point_and_box_prompts(small_sam):
    emb = torch.randn(1, 32, 4, 4)
    points = (torch.tensor([[[10.0, 5.0]], [[30.0, 20.0]]]), torch.ones(2, 1, dtype=torch.int64))
    with torch.no_grad():
        by_point = decode_from_prompts(small_sam, emb, (48, 64), (30, 40), points=points)
        box = torch.tensor([[2.0, 2, 20, 20]])
        by_box = decode_from_prompts(small_sam, emb, (48, 64), (30, 40), boxes=box)
    assert by_point.shape == (2, 30, 40) and by_box.shape == (1, 30, 40)
    assert not torch.allclose(by_point[0], by_point[1])
    with pytest.raises(ValueError, match="points, boxes"):
        decode_from_prompts(small_sam, emb, (48, 64), (30, 40))


# ---------------------------------------------------------------- builders and checkpoints


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_real_sizes_have_the_official_layout(name):
    with torch.device("meta"):  # no memory: only names and shapes are compared
        model = build_sam(name)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == official_layout(SAM_SPECS[name])
    assert sam_prompt_dim(name) == 256 and model.image_encoder.img_size == 1024


def test_toy_sizes():
    spec = SAM_SPECS["toy"]
    assert sam_prompt_dim("toy") == spec.prompt_embed_dim == 64
    assert spec.embedding_size == 32 and spec.low_res_size == 128


@pytest.mark.parametrize("spec", [TINY_VIT_B, TINY_VIT_H], ids=["vit_b_layout", "vit_h_layout"])
def test_strict_load_of_synthetic_pth(tmp_path, spec):
    state = synthetic_checkpoint(spec)
    path = tmp_path / "sam_synthetic.pth"
    torch.save(state, path)
    model = build_sam(spec, checkpoint=path)
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for key in ("image_encoder.blocks.7.attn.rel_pos_h", "mask_decoder.iou_prediction_head.layers.2.bias"):
        if key in state:
            torch.testing.assert_close(loaded[key], state[key])
    assert not model.training


def test_visa_prefix_variant_and_other_keys_ignored():
    state = synthetic_checkpoint(TINY_VIT_H, seed=3)
    visa = {f"model.visual_model.{k}": v for k, v in state.items()}
    visa["model.layers.0.self_attn.q_proj.weight"] = torch.zeros(4, 4)
    visa["model.text_hidden_fcs.0.0.weight"] = torch.zeros(4, 4)
    visa["lm_head.weight"] = torch.zeros(4, 4)
    for prefix in ("model.visual_model.", None):  # explicit and detected
        model = load_sam_state_dict(build_sam(TINY_VIT_H), visa, prefix=prefix)
        tokens = model.mask_decoder.mask_tokens.weight
        torch.testing.assert_close(tokens, state["mask_decoder.mask_tokens.weight"])
    model = build_sam(TINY_VIT_H, checkpoint=visa)
    torch.testing.assert_close(model.image_encoder.pos_embed, state["image_encoder.pos_embed"])


def test_strict_load_names_missing_unexpected_and_misshapen_keys():
    state = synthetic_checkpoint(TINY_VIT_B)
    broken = dict(state)
    del broken["mask_decoder.output_upscaling.0.weight"]
    broken["image_encoder.blocks.12.norm1.weight"] = torch.zeros(16)
    with pytest.raises(KeyError) as err:
        load_sam_state_dict(build_sam(TINY_VIT_B), broken)
    assert "mask_decoder.output_upscaling.0.weight" in str(err.value)
    assert "image_encoder.blocks.12.norm1.weight" in str(err.value)
    # A vit_h checkpoint into a vit_b model: the extra blocks are named.
    extra_blocks = r"unexpected keys: image_encoder\.blocks\.12\..*blocks\.31\..* \(280 in all\)"
    with pytest.raises(KeyError, match=extra_blocks):
        load_sam_state_dict(build_sam(TINY_VIT_B), synthetic_checkpoint(TINY_VIT_H))
    misshapen = dict(state)
    misshapen["prompt_encoder.no_mask_embed.weight"] = torch.zeros(1, 7)
    with pytest.raises(ValueError, match=r"prompt_encoder\.no_mask_embed\.weight: checkpoint \(1, 7\)"):
        load_sam_state_dict(build_sam(TINY_VIT_B), misshapen)
    with pytest.raises(KeyError, match="no SAM weights"):
        load_sam_state_dict(build_sam(TINY_VIT_B), {"lm_head.weight": torch.zeros(2)})


class _NotATensor:
    """Pickled into a checkpoint to prove that torch.load(weights_only=True) refuses it."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_weights_only_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"image_encoder.pos_embed": _NotATensor()}, handle, protocol=2)
    with pytest.raises(ValueError, match="weights_only=True"):
        read_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pth")
    truncated = tmp_path / "truncated.pth"
    torch.save({"a": torch.zeros(100)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        read_checkpoint(truncated)


def test_safetensors_round_trip_records_the_spec(tmp_path, small_sam):
    path = save_sam(small_sam, tmp_path / "w" / "sam.safetensors")
    again = build_sam(SMALL, checkpoint=path)
    for key, value in small_sam.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value)
    other = dataclasses.replace(SMALL, decoder_mlp_dim=8)
    with pytest.raises(ValueError, match="decoder_mlp_dim"):
        build_sam(other, checkpoint=path)


def test_unknown_name_and_missing_toy_weights(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="unknown SAM size 'vit_x'"):
        build_sam("vit_x")
    monkeypatch.setattr(sam_mod, "TOY_SAM_WEIGHTS", tmp_path / "absent.safetensors")
    with pytest.raises(FileNotFoundError, match="train_toy_sam.py"):
        build_sam("toy")
    assert sum(p.numel() for p in build_sam("toy", pretrained=False).parameters()) < 1_000_000


# ---------------------------------------------------------------- evaluation helpers and the shipped toy SAM


def _eval_script():
    import importlib.util

    from visa_lib.paths import REPO_ROOT

    spec = importlib.util.spec_from_file_location("eval_toy_sam", REPO_ROOT / "scripts" / "eval_toy_sam.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_prompts_and_baselines_by_hand():
    ev = _eval_script()
    mask = np.zeros((20, 30), bool)
    mask[4:11, 5:20] = True  # 7 x 15 rectangle
    assert ev.mask_box(mask) == (5.0, 4.0, 19.0, 10.0)
    x, y = center_point(mask)
    assert y == 7.0 and 8 <= x <= 16 and mask[int(y), int(x)]  # 3 px from the top and bottom edges
    assert ev.iou(ev.box_baseline(mask), mask) == 1.0
    disk = ev.disk_baseline(mask, 2.0)
    assert disk.sum() == 13 and ev.iou(disk, mask) == pytest.approx(13 / 105)
    assert ev.iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0


def test_shipped_toy_sam_really_segments():
    """The shipped toy SAM beats the prompt-only baselines on held-out valid frames (not a smoke test)."""
    from visa_lib.paths import REASONVOS_LITE

    if not sam_mod.TOY_SAM_WEIGHTS.exists() or not (REASONVOS_LITE / "meta_expressions_valid_.json").exists():
        pytest.skip("shipped toy SAM weights or ReasonVOS-lite valid split not present")
    ev = _eval_script()
    torch.manual_seed(0)
    samples = ev.valid_samples(REASONVOS_LITE, "valid", frame_stride=10)[:16]
    result = ev.evaluate(build_sam("toy"), samples, progress=False)
    assert result["objects"] >= 20
    assert result["point_miou"] > 50 and result["point_miou"] > result["point_baseline_miou"] + 10
    assert result["box_miou"] > 50


def test_dense_positional_encoding_equals_sams_and_runs_in_bf16():
    from visa_lib.model.sam import dense_positional_encoding

    sam = build_sam("toy", pretrained=False)
    assert torch.equal(dense_positional_encoding(sam), sam.prompt_encoder.get_dense_pe())
    sam.to(torch.bfloat16)  # stock get_dense_pe() fails here (float32 grid @ bf16 matrix)
    pe = dense_positional_encoding(sam)
    assert pe.dtype == torch.bfloat16 and pe.shape == (
        1,
        sam.prompt_encoder.embed_dim,
        *sam.prompt_encoder.image_embedding_size,
    )
