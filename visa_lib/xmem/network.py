"""The XMem network (inference-time interface) and its probability aggregation.

``XMem`` owns exactly four sub-modules -- ``key_encoder``, ``value_encoder``, ``key_proj``, ``decoder`` --
so its ``state_dict()`` has the key names of the released ``XMem.pth`` (412 keys at official widths).
Memory and the per-frame schedule live outside the network (``memory.py``, ``inference.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from visa_lib.xmem.config import XMemConfig
from visa_lib.xmem.decoder import Decoder
from visa_lib.xmem.encoders import KeyEncoder, KeyProjection, ValueEncoder

#: Probabilities are clamped to [EPS, 1 - EPS] before the logit in :func:`soft_aggregate` (XMem's value).
AGGREGATE_EPS = 1e-7


def soft_aggregate(prob: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Turn independent per-object probabilities into a softmax over {background, objects}.

    ``p' = clamp([prod_i (1 - p_i), p_1, ..., p_n], eps, 1 - eps)``, ``logits = log(p' / (1 - p'))``,
    ``prob = softmax(logits)`` along ``dim``.

    Args:
        prob (Tensor): per-object probabilities with the objects along ``dim`` (e.g. ``[B, N, H, W]``, dim=1).
        dim (int): the object axis.

    Returns:
        (logits, prob), both with ``N + 1`` entries along ``dim`` (background first).
    """
    bg = torch.prod(1 - prob, dim=dim, keepdim=True)
    p = torch.cat([bg, prob], dim=dim).clamp(AGGREGATE_EPS, 1 - AGGREGATE_EPS)
    logits = torch.log(p / (1 - p))
    return logits, torch.softmax(logits, dim=dim)


def others_of(masks: Tensor) -> Tensor:
    """For each object, the summed probability of all OTHER objects. masks ``[B, N, H, W]`` -> same shape."""
    return masks.sum(dim=1, keepdim=True) - masks if masks.shape[1] > 1 else torch.zeros_like(masks)


class XMem(nn.Module):
    """XMem: key encoder, value encoder, key projection and decoder.

    Build from widths with ``XMem(XMemConfig.official())`` / ``XMem(XMemConfig.toy())`` or from a file
    with :meth:`from_checkpoint`. The input normalisation/padding lives in ``processing.py``.
    """

    def __init__(self, cfg: XMemConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or XMemConfig.official()
        self.key_encoder = KeyEncoder(self.cfg)
        self.value_encoder = ValueEncoder(self.cfg)
        self.key_proj = KeyProjection(self.cfg.f16_dim, self.cfg.key_dim)
        self.decoder = Decoder(self.cfg)

    @property
    def hidden_dim(self) -> int:
        """Channels of the sensory memory (0 when disabled)."""
        return self.cfg.hidden_dim

    def encode_key(
        self, frame: Tensor, need_sk: bool = True, need_ek: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor, Tensor, Tensor]:
        """Key-encode a batch of padded, normalised frames.

        Args:
            frame (Tensor): ``[B, 3, H, W]``, H and W multiples of 16.
            need_sk (bool): compute the shrinkage (memory frames).
            need_ek (bool): compute the selection (query frames / long-term memory).

        Returns:
            (key ``[B,Ck,H/16,W/16]``, shrinkage ``[B,1,H/16,W/16]`` | None,
            selection ``[B,Ck,H/16,W/16]`` | None,
            f16, f8, f4).
        """
        if frame.dim() != 4 or frame.shape[1] != 3:
            raise ValueError(
                f"XMem.encode_key: expected a [B, 3, H, W] frame tensor, got {tuple(frame.shape)}"
            )
        if frame.shape[-1] % 16 or frame.shape[-2] % 16:
            raise ValueError(
                f"XMem.encode_key: H and W must be multiples of 16, got {tuple(frame.shape[-2:])}; "
                "pad with visa_lib.xmem.processing.pad_divide_by first"
            )
        f16, f8, f4 = self.key_encoder(frame)
        key, shrinkage, selection = self.key_proj(f16, need_sk, need_ek)
        return key, shrinkage, selection, f16, f8, f4

    def encode_value(
        self, frame: Tensor, f16: Tensor, hidden: Tensor | None, masks: Tensor, is_deep_update: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """Memory value of every object.

        Args:
            frame (Tensor): ``[B, 3, H, W]`` padded normalised frame.
            f16 (Tensor): its key feature ``[B, f16_dim, H/16, W/16]``.
            hidden (Tensor | None): sensory memory ``[B, N, hidden, H/16, W/16]``.
            masks (Tensor): soft object probabilities ``[B, N, H, W]`` (without background).
            is_deep_update (bool): update the sensory memory with the value encoder's GRU.

        Returns:
            (value ``[B, N, value_dim, H/16, W/16]``, hidden).
        """
        return self.value_encoder(frame, f16, hidden, masks, others_of(masks), is_deep_update)

    def segment(
        self,
        features: tuple[Tensor, Tensor, Tensor],
        readout: Tensor,
        hidden: Tensor | None,
        h_out: bool = True,
        strip_bg: bool = True,
    ) -> tuple[Tensor | None, Tensor, Tensor]:
        """Decode masks from a memory readout.

        Args:
            features (tuple): (f16, f8, f4) from :meth:`encode_key`.
            readout (Tensor): ``[B, N, value_dim, H/16, W/16]``.
            hidden (Tensor | None): sensory memory.
            h_out (bool): let the decoder update the sensory memory.
            strip_bg (bool): drop the background channel from the returned probabilities.

        Returns:
            (hidden, logits ``[B, N+1, H, W]``, prob ``[B, N+1, H, W]`` or ``[B, N, H, W]`` if strip_bg).
        """
        hidden, logits = self.decoder(*features, hidden, readout, h_out=h_out)
        logits, prob = soft_aggregate(torch.sigmoid(logits), dim=1)
        if strip_bg:
            prob = prob[:, 1:]
        return hidden, logits, prob

    @classmethod
    def from_checkpoint(
        cls,
        path_or_state_dict: str | Path | Mapping[str, Tensor],
        cfg: XMemConfig | None = None,
        map_location: str | torch.device = "cpu",
    ) -> XMem:
        """Build an XMem and strictly load an official ``XMem.pth`` (or a toy ``.safetensors``).

        Widths are read from the checkpoint unless ``cfg`` is given. A single-object checkpoint's 4-channel
        ``value_encoder.conv1.weight`` is widened to 5 channels with zeros (as XMem's ``load_weights`` does).

        Args:
            path_or_state_dict: a ``.pth`` / ``.safetensors`` path or an already loaded state dict.
            cfg (XMemConfig | None): force these widths instead of reading them from the checkpoint.
            map_location: device the tensors are loaded to (``"cpu"`` works without a GPU).

        Returns:
            XMem in eval mode.

        Raises:
            FileNotFoundError, ValueError: missing file, or missing/unexpected/mis-shaped keys (all named).
        """
        from visa_lib.xmem.checkpoint import load_state_dict_strict, read_state_dict

        from_file = isinstance(path_or_state_dict, (str, Path))
        sd = read_state_dict(path_or_state_dict, map_location=map_location)
        # Build on the meta device: no random initialisation of 62 M parameters that are overwritten anyway.
        with torch.device("meta"):
            model = cls(cfg or XMemConfig.from_state_dict(sd))
        source = str(path_or_state_dict) if from_file else "state dict"
        if from_file:  # the tensors are ours: adopt them without a copy
            load_state_dict_strict(model, sd, source=source, assign=True)
        else:  # the caller's tensors: copy, so the new model never aliases them
            model = model.to_empty(device=map_location)
            load_state_dict_strict(model, sd, source=source)
        return model.eval()
