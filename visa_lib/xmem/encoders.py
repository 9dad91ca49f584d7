"""XMem's two image encoders and the key projection.

* :class:`KeyEncoder` -- a ResNet-50-style trunk (bottleneck blocks) up to 1/16 resolution. Its first stage
  is called ``res2`` (not ``layer1``) in ``XMem.pth``; there is no ``layer4``.
* :class:`ValueEncoder` -- a ResNet-18-style trunk on ``[RGB, own mask, other objects' masks]`` (5 channels),
  fused with the key features and optionally updating the sensory memory.
* :class:`KeyProjection` -- key, shrinkage and selection heads on the 1/16 key feature.

The trunks are assembled from torchvision's ``Bottleneck`` / ``BasicBlock`` with random initialisation:
nothing is downloaded (the checkpoint overwrites every weight anyway).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from visa_lib.xmem.config import XMemConfig
from visa_lib.xmem.modules import FeatureFusionBlock, HiddenReinforcer


def _make_stage(
    block: type[nn.Module], inplanes: int, planes: int, blocks: int, stride: int
) -> nn.Sequential:
    """A ResNet stage: ``blocks`` residual blocks, the first one strided and projected when needed."""
    expansion = block.expansion  # type: ignore[attr-defined]
    downsample = None
    if stride != 1 or inplanes != planes * expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * expansion, 1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * expansion),
        )
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def _init_trunk(module: nn.Module) -> None:
    """torchvision's ResNet initialisation (He-normal convs, unit BatchNorm)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class KeyEncoder(nn.Module):
    """Bottleneck ResNet trunk: image ``[B,3,H,W]`` -> (f16, f8, f4) at 1/16, 1/8 and 1/4 resolution."""

    def __init__(self, cfg: XMemConfig) -> None:
        super().__init__()
        p = cfg.key_planes
        e = Bottleneck.expansion
        self.conv1 = nn.Conv2d(3, cfg.key_stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(cfg.key_stem)
        self.res2 = _make_stage(Bottleneck, cfg.key_stem, p[0], cfg.key_blocks[0], 1)
        self.layer2 = _make_stage(Bottleneck, p[0] * e, p[1], cfg.key_blocks[1], 2)
        self.layer3 = _make_stage(Bottleneck, p[1] * e, p[2], cfg.key_blocks[2], 2)
        _init_trunk(self)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x: ``[B, 3, H, W]`` normalised, H and W multiples of 16.

        Returns:
            (f16 ``[B, f16_dim, H/16, W/16]``, f8 ``[B, f8_dim, H/8, W/8]``, f4 ``[B, f4_dim, H/4, W/4]``).
        """
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
        f4 = self.res2(x)
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        return f16, f8, f4


class KeyProjection(nn.Module):
    """Key (no normalisation), shrinkage ``d^2 + 1`` (>= 1) and selection ``sigmoid(e)`` from f16."""

    def __init__(self, in_dim: int, key_dim: int) -> None:
        super().__init__()
        self.key_proj = nn.Conv2d(in_dim, key_dim, 3, padding=1)
        self.d_proj = nn.Conv2d(in_dim, 1, 3, padding=1)
        self.e_proj = nn.Conv2d(in_dim, key_dim, 3, padding=1)
        nn.init.orthogonal_(self.key_proj.weight)
        nn.init.zeros_(self.key_proj.bias)

    def forward(self, x: Tensor, need_s: bool, need_e: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """x: ``[B, in_dim, h, w]`` -> (key ``[B,Ck,h,w]``, shrinkage ``[B,1,h,w]`` or None,
        selection ``[B,Ck,h,w]`` or None)."""
        shrinkage = self.d_proj(x) ** 2 + 1 if need_s else None
        selection = torch.sigmoid(self.e_proj(x)) if need_e else None
        return self.key_proj(x), shrinkage, selection


class ValueEncoder(nn.Module):
    """Basic-block ResNet trunk on ``[RGB, mask, others]`` + fusion with f16 (+ deep sensory update)."""

    def __init__(self, cfg: XMemConfig) -> None:
        super().__init__()
        p = cfg.value_planes
        self.conv1 = nn.Conv2d(5, cfg.value_stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(cfg.value_stem)
        self.layer1 = _make_stage(BasicBlock, cfg.value_stem, p[0], cfg.value_blocks[0], 1)
        self.layer2 = _make_stage(BasicBlock, p[0], p[1], cfg.value_blocks[1], 2)
        self.layer3 = _make_stage(BasicBlock, p[1], p[2], cfg.value_blocks[2], 2)
        _init_trunk(self)
        self.fuser = FeatureFusionBlock(cfg.f16_dim, p[2], cfg.value_dim, cfg.value_dim, cfg.cbam_reduction)
        self.hidden_reinforce = (
            HiddenReinforcer(cfg.value_dim, cfg.hidden_dim) if cfg.hidden_dim > 0 else None
        )

    def forward(
        self,
        image: Tensor,
        f16: Tensor,
        h: Tensor | None,
        masks: Tensor,
        others: Tensor,
        is_deep_update: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """Encode one memory value per object.

        Args:
            image (Tensor): ``[B, 3, H, W]`` normalised frame.
            f16 (Tensor): ``[B, f16_dim, H/16, W/16]`` key-encoder feature of the same frame.
            h (Tensor | None): ``[B, N, hidden, H/16, W/16]`` sensory memory.
            masks (Tensor): ``[B, N, H, W]`` soft probability of each object.
            others (Tensor): ``[B, N, H, W]`` summed probability of the other objects.
            is_deep_update (bool): also update the sensory memory from the new value.

        Returns:
            (value ``[B, N, value_dim, H/16, W/16]``, h).
        """
        b, n = masks.shape[:2]
        g = torch.stack([masks, others], dim=2)
        g = torch.cat([image.unsqueeze(1).expand(-1, n, -1, -1, -1), g], dim=2).flatten(0, 1)
        # XMem orders maxpool before relu here; the two commute, kept for fidelity.
        g = F.relu(F.max_pool2d(self.bn1(self.conv1(g)), 3, stride=2, padding=1))
        g = self.layer3(self.layer2(self.layer1(g)))
        g = g.view(b, n, *g.shape[1:])
        g = self.fuser(f16, g)
        if is_deep_update and self.hidden_reinforce is not None and h is not None:
            h = self.hidden_reinforce(g, h)
        return g, h
