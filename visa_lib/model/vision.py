"""The frozen CLIP vision tower: frames -> 256 patch tokens per frame.

VISA (through Chat-UniVi) encodes every frame with ``openai/clip-vit-large-patch14``: 224 x 224
pixels, 14 x 14 patches -> 16 x 16 = 256 patch tokens of width 1024, read from the PENULTIMATE
encoder layer (``mm_vision_select_layer = -2``, before any final layer norm) with the CLS token
dropped. The tower is frozen and runs without gradients.

Two sizes share this one class (sizes are data, not subclasses):

* ``"toy"``: a 4-layer, 128-wide CLIP-style ViT with the same 224 px / patch 14 geometry, so it
  also yields 256 tokens per frame. Its weights ship in ``data_samples/weights/toy_clip.safetensors``
  and are reproduced by ``scripts/train_toy_clip.py``.
* ``"clip-vit-large-patch14"``: the real model, loaded from a LOCAL directory (``config.json`` +
  ``model.safetensors`` or ``pytorch_model.bin``), a weights file, or a state dict. Nothing is ever
  downloaded. Loading is strict: missing or unexpected keys raise an error that names them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel

from visa_lib.paths import TOY_WEIGHTS
from visa_lib.weights import load_strict, read_state_dict

#: Default location of the toy tower's weights.
TOY_CLIP_WEIGHTS = TOY_WEIGHTS / "toy_clip.safetensors"

#: Key prefixes of a full ``CLIPModel`` checkpoint that the vision tower legitimately ignores.
_IGNORED_PREFIXES = ("text_model.", "text_projection.", "visual_projection.", "logit_scale")


def toy_vision_config() -> CLIPVisionConfig:
    """Config of the toy tower: CLIP geometry (224 px, patch 14 -> 256 tokens), 128 wide, 4 layers."""
    return CLIPVisionConfig(
        image_size=224,
        patch_size=14,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        hidden_act="quick_gelu",
    )


def patch_positions(num_patches: int) -> torch.Tensor:
    """``(x, y)`` of each patch of a square grid in raster order, scaled to [-1, 1]: float [1, P, 2]."""
    grid = math.isqrt(num_patches)
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return (torch.stack([xs, ys], -1).reshape(1, -1, 2).float() / (grid - 1)) * 2 - 1


def clip_vit_large_patch14_config() -> CLIPVisionConfig:
    """Vision config of ``openai/clip-vit-large-patch14`` (24 layers, width 1024, 16 heads)."""
    return CLIPVisionConfig(
        image_size=224,
        patch_size=14,
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        projection_dim=768,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )


class VisionTower(nn.Module):
    """Frozen CLIP-style vision encoder returning the penultimate layer's patch tokens.

    Arguments:
        clip (CLIPVisionModel): the encoder (a ``transformers`` CLIP vision model).
        name (str): the size name it was built from (``"toy"``, ``"clip-vit-large-patch14"``).
        select_layer (int): index into the hidden states; -2 = penultimate layer, as Chat-UniVi.
    """

    #: CLIP's normalisation constants (RGB, on 0-1 pixels).
    pixel_mean = (0.48145466, 0.4578275, 0.40821073)
    pixel_std = (0.26862954, 0.26130258, 0.27577711)
    image_format = "RGB"

    def __init__(self, clip: CLIPVisionModel, name: str = "toy", select_layer: int = -2) -> None:
        super().__init__()
        config = clip.config
        if config.image_size // config.patch_size != 16:
            raise ValueError(
                f"VisionTower '{name}': image_size {config.image_size} / patch_size {config.patch_size} "
                "must give a 16 x 16 grid (256 tokens), as CLIP ViT-L/14 at 224 px does"
            )
        self.clip = clip
        self.name = name
        self.select_layer = select_layer
        self.image_size = int(config.image_size)
        self.clip.requires_grad_(False)
        self.clip.eval()

    @property
    def hidden_size(self) -> int:
        """Channel width C of the patch tokens (1024 for CLIP ViT-L/14, 128 for the toy)."""
        return int(self.clip.config.hidden_size)

    @property
    def num_patches(self) -> int:
        """Patch tokens per frame (256)."""
        return (self.image_size // int(self.clip.config.patch_size)) ** 2

    @property
    def device(self) -> torch.device:
        return self.clip.embeddings.patch_embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.clip.embeddings.patch_embedding.weight.dtype

    def train(self, mode: bool = True) -> VisionTower:
        """The tower is frozen: it stays in eval mode whatever the parent module does."""
        super().train(mode)
        self.clip.eval()
        return self

    def preprocess(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """CLIP preprocessing, as ``CLIPImageProcessor`` of ``openai/clip-vit-large-patch14`` does it.

        Resize so the SHORTEST side is 224 (bicubic, the long side ``int(224 * long / short)``),
        centre-crop 224 x 224, scale to 0-1, normalise with CLIP's mean/std. A 240 x 320 frame
        therefore loses 37 columns on each side; nothing is padded.

        Arguments:
            frames (np.ndarray | torch.Tensor): ``uint8 [T, H, W, 3]`` RGB (or one ``[H, W, 3]`` frame).

        Returns:
            torch.Tensor: float32 ``[T, 3, 224, 224]`` on the CPU.
        """
        if isinstance(frames, torch.Tensor):
            frames = frames.detach().cpu().numpy()
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"VisionTower.preprocess: frames must be uint8 [T, H, W, 3] RGB, got {frames.dtype} "
                f"{tuple(frames.shape)}; convert with np.asarray(frames, dtype=np.uint8)"
            )
        size = self.image_size
        out = np.empty((len(frames), size, size, 3), dtype=np.float32)
        for i, frame in enumerate(frames):
            new_h, new_w, top, left = self._resize_and_crop(*frame.shape[:2])
            img = Image.fromarray(frame).resize((new_w, new_h), resample=Image.BICUBIC)
            out[i] = np.asarray(img, dtype=np.float32)[top : top + size, left : left + size]
        pixels = torch.from_numpy(out).permute(0, 3, 1, 2) / 255.0
        mean = torch.tensor(self.pixel_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.pixel_std).view(1, 3, 1, 1)
        return (pixels - mean) / std

    def _resize_and_crop(self, h: int, w: int) -> tuple[int, int, int, int]:
        """``(new_h, new_w, top, left)``: shortest side resized to the input size, then the centre crop."""
        size = self.image_size
        short, long = (h, w) if h <= w else (w, h)
        new_long = int(size * long / short)
        new_h, new_w = (size, new_long) if h <= w else (new_long, size)
        return new_h, new_w, (new_h - size) // 2, (new_w - size) // 2

    def patch_coverage(self, mask: np.ndarray) -> torch.Tensor:
        """How much of each patch a frame mask covers, seen through :meth:`preprocess`'s resize and crop.

        Arguments:
            mask (np.ndarray): bool ``[H, W]`` on the frame (e.g. one object's ground truth).

        Returns:
            torch.Tensor: float32 ``[num_patches]`` in [0, 1], row-major over the patch grid (0 where
            the crop cut the object away).
        """
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"VisionTower.patch_coverage: mask must be [H, W], got {mask.shape}")
        new_h, new_w, top, left = self._resize_and_crop(*mask.shape)
        size, grid = self.image_size, int(round(self.num_patches**0.5))
        img = Image.fromarray(mask.astype(np.float32)).resize((new_w, new_h), resample=Image.BILINEAR)
        crop = np.asarray(img, dtype=np.float32)[top : top + size, left : left + size]
        cells = crop.reshape(grid, size // grid, grid, size // grid).mean(axis=(1, 3))
        return torch.from_numpy(np.ascontiguousarray(cells).reshape(-1)).clamp(0, 1)

    def patch_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer patch tokens WITH autograd (used to pretrain the toy tower).

        Arguments:
            pixels (torch.Tensor): float ``[T, 3, 224, 224]`` from :meth:`preprocess`.

        Returns:
            torch.Tensor: ``[T, 256, C]`` (CLS dropped).
        """
        if pixels.dim() != 4 or tuple(pixels.shape[1:]) != (3, self.image_size, self.image_size):
            raise ValueError(
                f"VisionTower: pixels must be [T, 3, {self.image_size}, {self.image_size}], got "
                f"{tuple(pixels.shape)}; call .preprocess(frames) first"
            )
        out = self.clip(pixel_values=pixels.to(self.device, self.dtype), output_hidden_states=True)
        return out.hidden_states[self.select_layer][:, 1:]

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Encode preprocessed frames (frozen, no gradients).

        Arguments:
            pixels (torch.Tensor): float ``[T, 3, 224, 224]``.

        Returns:
            torch.Tensor: patch tokens ``[T, 256, C]`` in the tower's dtype, on its device.
        """
        self.clip.eval()
        return self.patch_tokens(pixels)

    @torch.no_grad()
    def encode_frames(self, frames: np.ndarray | torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """``preprocess`` + ``forward`` in batches: ``uint8 [T, H, W, 3]`` -> ``[T, 256, C]``."""
        chunks = [
            self.forward(self.preprocess(frames[i : i + batch_size]))
            for i in range(0, len(frames), batch_size)
        ]
        return torch.cat(chunks)


def _read_state_dict(weights: str | Path | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(weights, Mapping):
        return dict(weights)
    path = Path(weights)
    if path.is_dir():
        for candidate in ("model.safetensors", "pytorch_model.bin"):
            if (path / candidate).is_file():
                path = path / candidate
                break
        else:
            raise FileNotFoundError(
                f"vision tower: {weights} holds neither model.safetensors nor pytorch_model.bin; "
                "point to the local copy of the CLIP checkpoint"
            )
    return read_state_dict(path, what="vision tower weights")


def _config_from_dir(weights: str | Path | Mapping[str, torch.Tensor]) -> CLIPVisionConfig | None:
    """Vision config from ``config.json`` next to the weights (a CLIPModel or CLIPVisionModel config)."""
    if isinstance(weights, Mapping):
        return None
    path = Path(weights)
    config_file = (path if path.is_dir() else path.parent) / "config.json"
    if not config_file.is_file():
        return None
    data = json.loads(config_file.read_text())
    data = data.get("vision_config", data)
    keep = {k: v for k, v in data.items() if k in CLIPVisionConfig().to_dict()}
    return CLIPVisionConfig(**keep)


def _vision_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an official checkpoint's keys (``vision_model.*``) onto ``CLIPVisionModel``'s own keys."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(_IGNORED_PREFIXES) or key.endswith("position_ids"):
            continue  # text half of a full CLIP checkpoint, projections, and a non-persistent buffer
        out[key.removeprefix("vision_model.")] = value
    return out


def load_vision_state(clip: CLIPVisionModel, state: dict[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state`` into ``clip``; raise naming every missing or unexpected key."""
    load_strict(
        clip,
        _vision_keys(state),
        f"vision tower checkpoint {source}",
        "Is this a CLIP vision checkpoint of the right size?",
    )


#: Size registry: name -> config factory.
VISION_CONFIGS = {"toy": toy_vision_config, "clip-vit-large-patch14": clip_vit_large_patch14_config}


def build_vision_tower(
    name: str = "toy",
    weights: str | Path | Mapping[str, torch.Tensor] | None = None,
    config: CLIPVisionConfig | None = None,
) -> VisionTower:
    """Build a frozen vision tower by size name and load its weights.

    Arguments:
        name (str): ``"toy"`` or ``"clip-vit-large-patch14"``.
        weights (str | Path | dict | None): a local checkpoint directory, a ``.safetensors`` /
            ``.bin`` file or a state dict. ``None``: the shipped toy weights for ``"toy"``; an
            error for the real model (it cannot be downloaded here).
        config (CLIPVisionConfig | None): override the size's config (e.g. tiny shapes in tests);
            by default a ``config.json`` next to the weights wins over the built-in one.

    Returns:
        VisionTower: frozen, in eval mode, on the CPU in float32.
    """
    if name not in VISION_CONFIGS:
        raise ValueError(f"build_vision_tower: unknown name {name!r}; choose one of {sorted(VISION_CONFIGS)}")
    if weights is None:
        if name != "toy":
            raise ValueError(
                f"build_vision_tower({name!r}): pass weights= a LOCAL directory or file with the "
                "checkpoint (e.g. a copy of the Hugging Face repo openai/clip-vit-large-patch14); "
                "this package never downloads weights"
            )
        weights = TOY_CLIP_WEIGHTS
        if not Path(weights).is_file():
            raise FileNotFoundError(
                f"toy vision tower weights {weights} are missing; run `python scripts/train_toy_clip.py`"
            )
    # The toy size is fixed by toy_vision_config(); only real checkpoints bring their own config.json.
    state = _read_state_dict(weights)  # before building: a missing file must not cost a 300M-parameter init
    cfg = config or (None if name == "toy" else _config_from_dir(weights)) or VISION_CONFIGS[name]()
    clip = CLIPVisionModel(cfg)
    source = "<state dict>" if isinstance(weights, Mapping) else str(weights)
    load_vision_state(clip, state, source)
    return VisionTower(clip, name=name)
