"""XMem's mask decoder: memory readout + sensory memory + key features -> one logit map per object."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visa_lib.xmem.config import XMemConfig
from visa_lib.xmem.modules import FeatureFusionBlock, HiddenUpdater, UpsampleBlock


class Decoder(nn.Module):
    """Fuse the readout with f16, upsample through f8 and f4 (skip connections), predict a 1/4 logit.

    Key names: ``fuser``, ``hidden_update``, ``up_16_8``, ``up_8_4``, ``pred`` (as in ``XMem.pth``).
    """

    def __init__(self, cfg: XMemConfig) -> None:
        super().__init__()
        d16, d8, d4 = cfg.decoder_dims
        self.hidden_dim = cfg.hidden_dim
        self.fuser = FeatureFusionBlock(
            cfg.f16_dim, cfg.value_dim + cfg.hidden_dim, d16, d16, cfg.cbam_reduction
        )
        self.hidden_update = (
            HiddenUpdater((d16, d8, d4 + 1), cfg.hidden_mid_dim, cfg.hidden_dim)
            if cfg.hidden_dim > 0
            else None
        )
        self.up_16_8 = UpsampleBlock(cfg.f8_dim, d16, d8)
        self.up_8_4 = UpsampleBlock(cfg.f4_dim, d8, d4)
        self.pred = nn.Conv2d(d4, 1, 3, padding=1)

    def forward(
        self, f16: Tensor, f8: Tensor, f4: Tensor, hidden: Tensor | None, readout: Tensor, h_out: bool = True
    ) -> tuple[Tensor | None, Tensor]:
        """Decode every object.

        Args:
            f16, f8, f4 (Tensor): key features ``[B, C, H/16, W/16]``, ``[B, C, H/8, W/8]``,
                ``[B, C, H/4, W/4]``.
            hidden (Tensor | None): ``[B, N, hidden, H/16, W/16]`` sensory memory (None if disabled).
            readout (Tensor): ``[B, N, value_dim, H/16, W/16]`` memory readout.
            h_out (bool): update the sensory memory from this frame's decoder features.

        Returns:
            (hidden, logits ``[B, N, H, W]`` at the padded input resolution, before the sigmoid).
        """
        b, n = readout.shape[:2]
        if self.hidden_update is not None and hidden is not None:
            g16 = self.fuser(f16, torch.cat([readout, hidden], dim=2))
        else:
            g16 = self.fuser(f16, readout)
        g8 = self.up_16_8(f8, g16)
        g4 = self.up_8_4(f4, g8)
        logits = self.pred(F.relu(g4.flatten(0, 1)))  # [B*N, 1, H/4, W/4]
        if h_out and self.hidden_update is not None and hidden is not None:
            g4 = torch.cat([g4, logits.view(b, n, 1, *logits.shape[-2:])], dim=2)
            hidden = self.hidden_update((g16, g8, g4), hidden)
        logits = F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False)
        return hidden, logits.view(b, n, *logits.shape[-2:])
