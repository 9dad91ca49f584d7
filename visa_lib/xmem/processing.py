"""XMem's pre- and post-processing, next to the model (as ``segment_anything`` does).

Pre: uint8 RGB ``[H, W, 3]`` -> [0, 1] -> ImageNet normalisation -> bilinear resize of the shorter side
to ``size`` (torchvision default antialias) -> zero padding (i.e. the mean colour, since it happens after
normalisation) to multiples of 16, ``floor(d/2)`` on the left/top. Masks are resized with nearest.
Post: the network's ``[N+1, h, w]`` probabilities are bilinearly resized to the original frame size and
arg-maxed over {background, objects}.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import Tensor
from torchvision.transforms import InterpolationMode

from visa_lib.xmem.config import IMAGENET_MEAN, IMAGENET_STD

#: Spatial sizes are padded to a multiple of this (the network's output stride).
PAD_DIVISOR = 16

Pad = tuple[int, int, int, int]  # (left, right, top, bottom) as in F.pad


def resized_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """Shape after resizing the shorter side to ``size`` (torchvision's rule: the long side is truncated).

    ``size <= 0`` keeps the native shape.
    """
    if size <= 0:
        return h, w
    if h <= w:
        return size, int(size * w / h)
    return int(size * h / w), size


def normalize_frame(frame: np.ndarray | Tensor, size: int = 480) -> Tensor:
    """One uint8 RGB frame ``[H, W, 3]`` -> normalised, resized float tensor ``[3, h, w]``.

    Args:
        frame (ndarray | Tensor): uint8 ``[H, W, 3]``.
        size (int): shorter side after resizing; <= 0 keeps the native resolution.
    """
    x = torch.as_tensor(np.asarray(frame))
    if x.dtype != torch.uint8 or x.dim() != 3 or x.shape[-1] != 3:
        raise ValueError(
            f"normalize_frame: expected a uint8 RGB frame [H, W, 3], got dtype {x.dtype} "
            f"shape {tuple(x.shape)}; "
            "convert with np.asarray(img.convert('RGB'))"
        )
    x = x.permute(2, 0, 1).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    x = (x - mean) / std
    h, w = x.shape[-2:]
    target = resized_shape(h, w, size)
    if target != (h, w):
        x = TF.resize(x, list(target), interpolation=InterpolationMode.BILINEAR, antialias=True)
    return x


def resize_mask(mask: Tensor, shape: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of per-object masks ``[N, H, W]`` (float) to ``shape``."""
    if tuple(mask.shape[-2:]) == tuple(shape):
        return mask
    return F.interpolate(mask.unsqueeze(0), size=shape, mode="nearest")[0]


def pad_divide_by(x: Tensor, d: int = PAD_DIVISOR) -> tuple[Tensor, Pad]:
    """Zero-pad the last two dims up to multiples of ``d``, ``floor`` of the padding on the left/top.

    Returns:
        (padded tensor, pad = (left, right, top, bottom)).
    """
    h, w = x.shape[-2:]
    new_h = h if h % d == 0 else h + d - h % d
    new_w = w if w % d == 0 else w + d - w % d
    lh, uh = (new_h - h) // 2, (new_h - h) - (new_h - h) // 2
    lw, uw = (new_w - w) // 2, (new_w - w) - (new_w - w) // 2
    pad = (lw, uw, lh, uh)
    return (F.pad(x, pad) if any(pad) else x), pad


def unpad(x: Tensor, pad: Pad) -> Tensor:
    """Crop what :func:`pad_divide_by` added."""
    lw, uw, lh, uh = pad
    h, w = x.shape[-2:]
    return x[..., lh : h - uh, lw : w - uw]


def postprocess_probabilities(prob: Tensor, shape: tuple[int, int]) -> Tensor:
    """Bilinear (align_corners=False) resize of ``[N+1, h, w]`` probabilities to the frame ``shape``."""
    if tuple(prob.shape[-2:]) == tuple(shape):
        return prob
    return F.interpolate(prob.unsqueeze(0), size=shape, mode="bilinear", align_corners=False)[0]


def labels_from_probabilities(prob: Tensor) -> Tensor:
    """Arg-max over {background, objects}: ``[N+1, H, W]`` -> int64 label map ``[H, W]`` (0 = background)."""
    return prob.argmax(dim=0)
