"""Tests of visa_lib.model.vision: strict real-checkpoint loading, CLIP preprocessing, the toy tower."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

from visa_lib.model.vision import TOY_CLIP_WEIGHTS, VisionTower, build_vision_tower, toy_vision_config


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    """A full CLIPModel checkpoint with the official key names and tiny shapes, saved to disk."""
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2),
        vision_config=dict(
            image_size=224,
            patch_size=14,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=3,
            num_attention_heads=2,
            hidden_act="quick_gelu",
        ),
        projection_dim=8,
    )
    model = CLIPModel(cfg).eval()
    out = tmp_path_factory.mktemp("clip")
    model.save_pretrained(out)
    return out, model


def test_real_loader_reads_official_layout_and_takes_penultimate_layer(tiny_clip_dir):
    path, model = tiny_clip_dir
    tower = build_vision_tower("clip-vit-large-patch14", path)
    assert tower.hidden_size == 16 and tower.num_patches == 256
    pixels = torch.randn(2, 3, 224, 224)
    tokens = tower(pixels)
    assert tokens.shape == (2, 256, 16) and not tokens.requires_grad
    with torch.no_grad():
        ref = model.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states
    torch.testing.assert_close(tokens, ref[-2][:, 1:])  # penultimate layer, CLS dropped
    assert not torch.allclose(tokens, ref[-1][:, 1:])


def test_real_loader_names_missing_and_unexpected_keys(tiny_clip_dir):
    path, _ = tiny_clip_dir
    state = load_file(str(path / "model.safetensors"))
    cfg = build_vision_tower("clip-vit-large-patch14", path).clip.config
    broken = dict(state)
    del broken["vision_model.encoder.layers.1.mlp.fc1.weight"]
    with pytest.raises(KeyError, match=r"encoder\.layers\.1\.mlp\.fc1\.weight"):
        build_vision_tower("clip-vit-large-patch14", broken, config=cfg)
    extra = dict(state)
    extra["vision_model.encoder.layers.7.mlp.fc1.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match=r"unexpected keys: encoder\.layers\.7"):
        build_vision_tower("clip-vit-large-patch14", extra, config=cfg)


def test_real_loader_rejects_wrong_shapes_and_never_downloads(tiny_clip_dir, tmp_path):
    path, _ = tiny_clip_dir
    state = load_file(str(path / "model.safetensors"))
    wide = build_vision_tower("clip-vit-large-patch14", path).clip.config
    wide.hidden_size = 32  # same keys, other width than the checkpoint
    with pytest.raises(ValueError, match="shape mismatch"):
        build_vision_tower("clip-vit-large-patch14", state, config=wide)
    with pytest.raises(ValueError, match="LOCAL directory"):
        build_vision_tower("clip-vit-large-patch14")
    with pytest.raises(FileNotFoundError, match="neither model.safetensors"):
        build_vision_tower("clip-vit-large-patch14", tmp_path)
    with pytest.raises(ValueError, match="unknown name"):
        build_vision_tower("clip-vit-huge")


def test_loader_accepts_a_single_safetensors_file_of_vision_keys(tiny_clip_dir, tmp_path):
    path, model = tiny_clip_dir
    state = {
        k: v for k, v in load_file(str(path / "model.safetensors")).items() if k.startswith("vision_model.")
    }
    save_file(state, str(tmp_path / "vision.safetensors"))
    cfg = model.vision_model.config
    tower = build_vision_tower("clip-vit-large-patch14", tmp_path / "vision.safetensors", config=cfg)
    assert tower(torch.zeros(1, 3, 224, 224)).shape == (1, 256, 16)


def test_preprocess_matches_clip_image_processor():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, 240, 320, 3), dtype=np.uint8)
    tower = VisionTower(_random_toy())
    ours = tower.preprocess(frames)
    assert ours.shape == (2, 3, 224, 224) and ours.dtype == torch.float32
    ref = CLIPImageProcessor()(images=list(frames), return_tensors="pt")["pixel_values"]
    # Same resize / crop / normalisation; bicubic kernels differ slightly between PIL and torch.
    assert (ours - ref).abs().mean() < 0.02
    tall = tower.preprocess(rng.integers(0, 256, size=(300, 200, 3), dtype=np.uint8))
    assert tall.shape == (1, 3, 224, 224)
    with pytest.raises(ValueError, match=r"uint8 \[T, H, W, 3\]"):
        tower.preprocess(frames.astype(np.float32))


def test_patch_coverage_follows_the_resize_and_centre_crop():
    tower = VisionTower(_random_toy())
    mask = np.zeros((240, 320), dtype=bool)
    mask[:, :37] = True  # the crop of a 240 x 320 frame drops 37 resized columns on each side
    assert tower.patch_coverage(mask).max() == 0
    assert tower.patch_coverage(np.ones((240, 320), dtype=bool)).min() == 1
    mask = np.zeros((240, 320), dtype=bool)
    mask[:120, 160:] = True  # top-right quarter of the frame -> top-right quarter of the grid
    grid = tower.patch_coverage(mask).reshape(16, 16)
    assert grid[:8, 8:].mean() > 0.99 and grid[8:].max() < 0.01 and grid[:, :8].max() < 0.01
    # the patch tokens a white square lights up are the ones its coverage names
    frame = np.zeros((240, 320, 3), dtype=np.uint8)
    frame[100:140, 140:180] = 255
    pixels = tower.preprocess(frame)[0].mean(0)  # [224,224], normalised
    bright = (pixels - pixels.min()) / (pixels.max() - pixels.min())
    seen = bright.reshape(16, 14, 16, 14).mean((1, 3)).flatten()
    coverage = tower.patch_coverage(frame[..., 0] > 0)
    assert coverage.sum() > 4 and (seen - coverage).abs().max() < 0.1
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        tower.patch_coverage(np.ones((2, 240, 320), dtype=bool))


def test_tower_stays_frozen_and_in_eval_mode():
    tower = VisionTower(_random_toy())
    parent = torch.nn.Sequential(tower)
    parent.train()
    assert not tower.clip.training
    assert all(not p.requires_grad for p in tower.parameters())
    with pytest.raises(ValueError, match="call .preprocess"):
        tower(torch.zeros(1, 3, 64, 64))


def _random_toy():
    from transformers import CLIPVisionModel

    torch.manual_seed(0)
    return CLIPVisionModel(toy_vision_config())


def test_shipped_toy_tower_loads_and_separates_objects_from_background():
    assert TOY_CLIP_WEIGHTS.is_file(), "run scripts/train_toy_clip.py to create the toy tower weights"
    tower = build_vision_tower("toy")
    assert tower.hidden_size == toy_vision_config().hidden_size and tower.num_patches == 256
    # A flat background with one bright square: trained patch tokens differ inside vs outside it.
    frame = np.full((224, 224, 3), 40, dtype=np.uint8)
    frame[56:140, 56:140] = (230, 60, 60)
    tokens = tower.encode_frames(frame[None])[0].reshape(16, 16, -1)
    inside = tokens[5:9, 5:9].reshape(-1, tokens.shape[-1])
    outside = tokens[12:, 12:].reshape(-1, tokens.shape[-1])
    within = torch.cdist(outside, outside).mean()
    between = torch.cdist(inside, outside).mean()
    assert between > 2 * within
