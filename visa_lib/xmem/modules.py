"""XMem's building blocks: group convolutions, pre-activation residual blocks, CBAM, the fusion and
upsampling blocks and the two GRU-like sensory-memory updaters.

"Group" tensors carry one feature map per object: shape ``[B, N_obj, C, H, W]``. Group convolutions fold
``B * N_obj`` into the batch, so the same weights process every object. Attribute names mirror the released
``XMem.pth`` exactly (``block1.downsample``, ``attention.ChannelGate.mlp.1``, ...) -- a rename here breaks
strict loading.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def interpolate_groups(g: Tensor, ratio: float, mode: str, align_corners: bool | None) -> Tensor:
    """Resize a group tensor ``[B, N, C, H, W]`` by ``ratio`` (objects folded into the batch)."""
    out = F.interpolate(g.flatten(0, 1), scale_factor=ratio, mode=mode, align_corners=align_corners)
    return out.view(g.shape[0], g.shape[1], *out.shape[1:])


def upsample_groups(g: Tensor, ratio: float = 2) -> Tensor:
    """Bilinear (align_corners=False) upsampling of a group tensor, as XMem's decoder does."""
    return interpolate_groups(g, ratio, "bilinear", False)


def downsample_groups(g: Tensor, ratio: float = 0.5) -> Tensor:
    """Area (average) downsampling of a group tensor, as XMem's sensory-memory updater does."""
    return interpolate_groups(g, ratio, "area", None)


class GConv2D(nn.Conv2d):
    """A ``Conv2d`` applied to every object of a group tensor ``[B, N, C, H, W]``."""

    def forward(self, g: Tensor) -> Tensor:  # noqa: D102 - see class docstring
        out = super().forward(g.flatten(0, 1))
        return out.view(g.shape[0], g.shape[1], *out.shape[1:])


class GroupResBlock(nn.Module):
    """Pre-activation residual block on group tensors: ``conv2(relu(conv1(relu(g)))) + skip(g)``.

    The skip is the identity when ``in_dim == out_dim``, else a 3x3 conv *with bias* on the raw ``g``.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.downsample = None if in_dim == out_dim else GConv2D(in_dim, out_dim, 3, padding=1)
        self.conv1 = GConv2D(in_dim, out_dim, 3, padding=1)
        self.conv2 = GConv2D(out_dim, out_dim, 3, padding=1)

    def forward(self, g: Tensor) -> Tensor:
        """g: ``[B, N, in_dim, H, W]`` -> ``[B, N, out_dim, H, W]``."""
        out = self.conv2(F.relu(self.conv1(F.relu(g))))
        skip = g if self.downsample is None else self.downsample(g)
        return out + skip


class ChannelGate(nn.Module):
    """CBAM channel attention: a shared MLP on global average- and max-pooled features, summed, sigmoid."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        # Index 0 is Flatten and 2 is ReLU, so the weights live at mlp.1 and mlp.3 as in XMem.pth.
        self.mlp = nn.Sequential(
            nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[B, C, H, W]`` -> x scaled per channel."""
        att = self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(att)[:, :, None, None]


class _SpatialConv(nn.Module):
    """Holds the 7x7 conv under the name ``conv`` (key ``SpatialGate.spatial.conv``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.conv(x)


class SpatialGate(nn.Module):
    """CBAM spatial attention: ``sigmoid(conv7x7([max over C, mean over C]))`` (max first)."""

    def __init__(self) -> None:
        super().__init__()
        self.spatial = _SpatialConv()

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[B, C, H, W]`` -> x scaled per pixel."""
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    """Convolutional block attention: channel gate, then spatial gate."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.ChannelGate = ChannelGate(channels, reduction)  # noqa: N815 - key name in XMem.pth
        self.SpatialGate = SpatialGate()  # noqa: N815

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[B, C, H, W]`` -> same shape."""
        return self.SpatialGate(self.ChannelGate(x))


class FeatureFusionBlock(nn.Module):
    """Fuse a shared image feature with per-object features.

    ``g = block1(cat[x, g])`` (x first), ``g = block2(g + CBAM(g))``.
    """

    def __init__(self, x_in: int, g_in: int, g_mid: int, g_out: int, reduction: int = 16) -> None:
        super().__init__()
        self.block1 = GroupResBlock(x_in + g_in, g_mid)
        self.attention = CBAM(g_mid, reduction)
        self.block2 = GroupResBlock(g_mid, g_out)

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        """x: ``[B, x_in, H, W]``; g: ``[B, N, g_in, H, W]`` -> ``[B, N, g_out, H, W]``."""
        b, n = g.shape[:2]
        g = torch.cat([x.unsqueeze(1).expand(-1, n, -1, -1, -1), g], dim=2)
        g = self.block1(g)
        r = self.attention(g.flatten(0, 1)).view(b, n, *g.shape[2:])
        return self.block2(g + r)


class UpsampleBlock(nn.Module):
    """Decoder step: ``out_conv(skip_conv(skip) + bilinear_x2(g))`` (skip shared by all objects)."""

    def __init__(self, skip_dim: int, up_dim: int, out_dim: int) -> None:
        super().__init__()
        self.skip_conv = nn.Conv2d(skip_dim, up_dim, 3, padding=1)
        self.out_conv = GroupResBlock(up_dim, out_dim)

    def forward(self, skip_f: Tensor, up_g: Tensor) -> Tensor:
        """skip_f: ``[B, skip_dim, 2H, 2W]``; up_g: ``[B, N, up_dim, H, W]``
        -> ``[B, N, out_dim, 2H, 2W]``."""
        skip = self.skip_conv(skip_f)
        g = upsample_groups(up_g, 2)
        return self.out_conv(skip.unsqueeze(1) + g)


def gru_update(values: Tensor, h: Tensor, hidden_dim: int) -> Tensor:
    """XMem's GRU-like gate: ``f*h*(1-u) + u*n`` with f, u sigmoid and n tanh of three channel slices.

    Args:
        values (Tensor): ``[B, N, 3*hidden_dim, H, W]`` gate pre-activations in the order forget, update, new.
        h (Tensor): ``[B, N, hidden_dim, H, W]`` previous sensory memory.
        hidden_dim (int): channels of the sensory memory.

    Returns:
        Tensor: the new sensory memory, same shape as ``h``.
    """
    forget = torch.sigmoid(values[:, :, :hidden_dim])
    update = torch.sigmoid(values[:, :, hidden_dim : 2 * hidden_dim])
    new = torch.tanh(values[:, :, 2 * hidden_dim :])
    return forget * h * (1 - update) + update * new


class HiddenUpdater(nn.Module):
    """Decoder-side sensory-memory update from the 1/16, 1/8 and 1/4 decoder features (+ 1/4 logit)."""

    def __init__(self, g_dims: tuple[int, int, int], mid_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.g16_conv = GConv2D(g_dims[0], mid_dim, 1)
        self.g8_conv = GConv2D(g_dims[1], mid_dim, 1)
        self.g4_conv = GConv2D(g_dims[2], mid_dim, 1)
        self.transform = GConv2D(mid_dim + hidden_dim, hidden_dim * 3, 3, padding=1)
        nn.init.xavier_normal_(self.transform.weight)

    def forward(self, g: tuple[Tensor, Tensor, Tensor], h: Tensor) -> Tensor:
        """g: (g16 ``[B,N,d16,h,w]``, g8 ``[B,N,d8,2h,2w]``, g4+logit ``[B,N,d4+1,4h,4w]``);
        h: ``[B,N,hid,h,w]``."""
        x = self.g16_conv(g[0]) + self.g8_conv(downsample_groups(g[1], 1 / 2))
        x = x + self.g4_conv(downsample_groups(g[2], 1 / 4))
        return gru_update(self.transform(torch.cat([x, h], dim=2)), h, self.hidden_dim)


class HiddenReinforcer(nn.Module):
    """Value-encoder-side ("deep") sensory-memory update from the new memory value."""

    def __init__(self, g_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.transform = GConv2D(g_dim + hidden_dim, hidden_dim * 3, 3, padding=1)
        nn.init.xavier_normal_(self.transform.weight)

    def forward(self, g: Tensor, h: Tensor) -> Tensor:
        """g: ``[B, N, g_dim, H, W]``; h: ``[B, N, hidden, H, W]`` -> new h."""
        return gru_update(self.transform(torch.cat([g, h], dim=2)), h, self.hidden_dim)
