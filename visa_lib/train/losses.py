"""VISA's training loss (docs/training_recipe.md): ``1.0 CE + 2.0 BCE + 0.5 DICE``.

* CE: next-token cross-entropy on the answer tokens (computed by ``VisaModel.forward``).
* BCE: per-mask binary cross-entropy with logits, **mean over pixels**, then averaged over masks.
* DICE: ``1 - (2 sum(p t) + eps') / (sum p + sum t + eps')`` on ``p = sigmoid(logits)``, computed
  like VISA with every term divided by ``scale = 1000`` and ``eps = 1e-6`` (so ``eps' = 1e-3``
  in unscaled units); averaged over masks. Empty ground truth still pushes predictions to zero.

Masks are averaged over ALL masks of a batch (VISA multiplies each sample's mean back by its mask
count and divides the total by the number of masks), which ``mask_losses`` does when given every
mask of the batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Loss weights of VISA's training script.
CE_WEIGHT, BCE_WEIGHT, DICE_WEIGHT = 1.0, 2.0, 0.5
DICE_SCALE, DICE_EPS = 1000.0, 1e-6
#: Guard of the division by the number of masks.
NUM_MASKS_EPS = 1e-8


def _flatten_pair(
    logits: torch.Tensor, targets: torch.Tensor, where: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.shape != targets.shape:
        raise ValueError(
            f"{where}: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ; "
            "give one [H,W] ground-truth mask per predicted mask, at the frame's size"
        )
    return logits.float().flatten(1), targets.float().flatten(1)


def sigmoid_ce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy, mean over pixels, mean over masks.

    Arguments:
      logits (float [N,H,W]): predicted mask logits.
      targets (float/bool [N,H,W]): 0/1 ground truth.
    Returns:
      scalar tensor (0 when N = 0, still differentiable).
    """
    x, t = _flatten_pair(logits, targets, "sigmoid_ce_loss")
    per_mask = F.binary_cross_entropy_with_logits(x, t, reduction="none").mean(1)  # [N]
    return per_mask.sum() / (x.shape[0] + NUM_MASKS_EPS)


def dice_loss(
    logits: torch.Tensor, targets: torch.Tensor, scale: float = DICE_SCALE, eps: float = DICE_EPS
) -> torch.Tensor:
    """VISA's scaled DICE loss, mean over masks.

    Arguments:
      logits (float [N,H,W]): predicted mask logits.
      targets (float/bool [N,H,W]): 0/1 ground truth.
      scale (float), eps (float): VISA's 1000 and 1e-6.
    Returns:
      scalar tensor.
    """
    x, t = _flatten_pair(logits, targets, "dice_loss")
    p = x.sigmoid()
    numerator = 2 * (p / scale * t).sum(-1)
    denominator = (p / scale).sum(-1) + (t / scale).sum(-1)
    per_mask = 1 - (numerator + eps) / (denominator + eps)
    return per_mask.sum() / (x.shape[0] + NUM_MASKS_EPS)


@dataclass
class VisaLoss:
    """The weighted total and its parts (all scalar tensors; ``total`` carries the gradient)."""

    total: torch.Tensor
    ce: torch.Tensor
    bce: torch.Tensor
    dice: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        """The four numbers as Python floats (for logging)."""
        return {k: float(getattr(self, k).detach()) for k in ("total", "ce", "bce", "dice")}


def visa_loss(
    ce: torch.Tensor | None,
    mask_logits: torch.Tensor,
    gt_masks: torch.Tensor,
    ce_weight: float = CE_WEIGHT,
    bce_weight: float = BCE_WEIGHT,
    dice_weight: float = DICE_WEIGHT,
) -> VisaLoss:
    """``ce_weight * CE + bce_weight * BCE + dice_weight * DICE``.

    Arguments:
      ce (Tensor | None): token cross-entropy from ``VisaModel.forward`` (None counts as 0).
      mask_logits (float [N,H,W]): ``VisaOutput.mask_logits``.
      gt_masks (bool/float [N,H,W]): ground truth at the target frame, one per ``[SEG]``.
      ce_weight, bce_weight, dice_weight (float): VISA's 1.0, 2.0, 0.5.
    Returns:
      VisaLoss
    """
    gt = gt_masks.to(mask_logits.device)
    bce = sigmoid_ce_loss(mask_logits, gt)
    dice = dice_loss(mask_logits, gt)
    ce_term = ce if ce is not None else mask_logits.new_zeros(())
    total = ce_weight * ce_term + bce_weight * bce + dice_weight * dice
    return VisaLoss(total, ce_term, bce, dice)
