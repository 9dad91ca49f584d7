"""The training loop of the VISA stage: parameter groups, VISA's learning-rate shape, a phase of steps.

``scripts/train_toy_visa.py`` and notebook 06 both train with :func:`train_phase`; what they draw
(VISA clips or warm-up answers) and which parameters are trainable (``prepare_for_training``) is up
to the caller.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from visa_lib.model.visa import VisaModel
from visa_lib.train.step import VisaSample, training_step


def parameter_groups(
    model: torch.nn.Module, lr: float, group_lrs: dict[str, float] | None = None
) -> list[dict]:
    """Trainable parameters split by top-level part (``llm``, ``seg_head``, ``sam``, ...) with their lr.

    Arguments:
      model (torch.nn.Module): the prepared VisaModel.
      lr (float): default learning rate.
      group_lrs (dict[str, float] | None): learning rate per top-level part name; 0 freezes that part.
    Returns:
      list[dict]: AdamW parameter groups (each with a "name").
    """
    group_lrs = group_lrs or {}
    parts: dict[str, list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        part = name.split(".")[0]
        if param.requires_grad and group_lrs.get(part, lr) == 0:
            param.requires_grad_(False)  # a zero lr freezes the part (no wasted backward through it)
        if param.requires_grad:
            parts.setdefault(part, []).append(param)
    return [{"name": k, "params": v, "lr": group_lrs.get(k, lr)} for k, v in parts.items()]


def warmup_decay(steps: int, warmup: int) -> Callable[[int], float]:
    """VISA's ``WarmupDecayLR`` shape as a multiplier: linear up over ``warmup`` steps, then linear to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return factor


def train_phase(
    model: VisaModel,
    draw: Callable[[np.random.Generator], VisaSample],
    steps: int,
    rng: np.random.Generator,
    lr: float = 1e-3,
    batch: int = 2,
    group_lrs: dict[str, float] | None = None,
    warmup: int = 50,
    name: str = "train",
    log_every: int = 50,
    progress: bool = True,
) -> list[dict[str, float]]:
    """``steps`` AdamW steps (betas 0.9/0.95, no weight decay, gradient clip 1.0) on drawn samples.

    Arguments:
      model (VisaModel): prepared with ``prepare_for_training`` (its trainable parameters are trained).
      draw (Callable): ``draw(rng) -> VisaSample``, one sample per call; ``batch`` calls per step.
      steps (int): optimisation steps.
      rng (np.random.Generator): passed to ``draw``.
      lr (float): peak learning rate; ``group_lrs`` overrides it per top-level part (0 freezes).
      batch (int): samples per step.
      warmup (int): linear warm-up steps, then linear decay to 0 at ``steps``.
      name (str): label of the progress bar and log lines.
      log_every (int): print the mean losses of the last ``log_every`` steps that often (0: never).
      progress (bool): a tqdm bar.
    Returns:
      list[dict[str, float]]: per step, the mean "total", "ce", "bce", "dice" of its batch.
    """
    groups = parameter_groups(model, lr, group_lrs)
    if not groups:
        raise ValueError(
            "train_phase: the model has no trainable parameters; call prepare_for_training first"
        )
    if log_every:
        sizes = (f"{g['name']} {sum(p.numel() for p in g['params']):,} (lr {g['lr']:g})" for g in groups)
        print(f"{name} trainable parameters: " + ", ".join(sizes), flush=True)
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=0.0, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_decay(steps, warmup))
    model.train()
    history: list[dict[str, float]] = []
    for step in tqdm(range(steps), desc=name, mininterval=10, disable=not progress):
        samples = [draw(rng) for _ in range(batch)]
        history.append(training_step(model, samples, optimizer, grad_clip=1.0, scheduler=scheduler))
        if log_every and (step % log_every == 0 or step == steps - 1):
            recent = {k: float(np.mean([h[k] for h in history[-log_every:]])) for k in history[-1]}
            print(f"{name} step {step}: " + " ".join(f"{k}={v:.4f}" for k, v in recent.items()), flush=True)
    model.eval()
    return history
