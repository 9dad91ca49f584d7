"""A tiny VISA model and a stream of random box samples for the training tests.

Run as a script (``accelerate launch ... tests/tiny_training.py OUT.safetensors K=V ...``) it trains
with ``visa_lib.train.train`` and, on the main process, saves the trained weights to OUT; the
distributed test compares two such processes with one.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from test_visa_model import TINY, tiny_vision_tower

from visa_lib.model.build import build_visa
from visa_lib.model.sam import build_sam
from visa_lib.train.config import TrainConfig
from visa_lib.train.sources import SampleStream, TrainingData
from visa_lib.train.step import VisaSample

#: A run small enough for the CPU: 2 text-only warm-up steps, then 4 VISA steps of 2 samples.
TINY_RUN = dict(
    model="tiny",
    text_warmup_steps=2,
    steps=4,
    micro_batch=1,
    grad_accum=2,
    lr=3e-3,
    lr_warmup_steps=2,
    mixed_precision="no",
    save_every=0,
    eval_every=0,
    log_every=1,
    lora_dropout=0.0,  # processes comparable sample by sample; the resume test turns it on
)


def tiny_model(seed: int = 0):
    """The tests' tiny VISA (random weights)."""
    torch.manual_seed(seed)
    parts = {"vision_tower": tiny_vision_tower(), "sam": build_sam("toy", pretrained=False)}
    return build_visa(TINY, weights=None, pretrained=False, check_trained=False, seed=seed, **parts)


def _box_sample(rng: np.random.Generator, text_only: bool) -> VisaSample:
    frames = rng.integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    y, x = int(rng.integers(0, 30)), int(rng.integers(0, 40))
    gt = np.zeros((1, 48, 64), bool)
    gt[0, y : y + 16, x : x + 20] = True
    frames[2, y : y + 16, x : x + 20] = (255, 0, 0)
    if text_only:
        return VisaSample(frames[:2], frames[2], ["the red circle"], gt[:0], answers=["It is red."])
    return VisaSample(frames[:2], frames[2], ["the red circle"], gt)


def tiny_data(seed: int = 0) -> TrainingData:
    """A warm-up stream (text answers, no mask) then VISA samples, both from one generator."""
    rng = np.random.default_rng(seed)
    return TrainingData(
        visa=SampleStream(lambda r: _box_sample(r, False), rng),
        text_warmup=SampleStream(lambda r: _box_sample(r, True), rng),
        rng=rng,
    )


def tiny_config(**changes) -> TrainConfig:
    return TrainConfig(**{**TINY_RUN, **changes})


def _parse(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"none": None, "true": True, "false": False}.get(value.lower(), value)


if __name__ == "__main__":  # accelerate launch tests/tiny_training.py OUT K=V ...
    from safetensors.torch import save_file

    from visa_lib.train import train

    torch.set_num_threads(1)
    out, *pairs = sys.argv[1:]
    changes = {k: _parse(v) for k, v in (p.split("=", 1) for p in pairs)}
    result = train(tiny_config(**changes), model=tiny_model(), data=tiny_data(), progress=False)
    from accelerate import PartialState

    process = PartialState()
    if process.is_main_process:
        state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
        metadata = {
            "losses": json.dumps([h["total"] for h in result.history]),
            "processes": str(process.num_processes),
            "backend": str(process.backend),
        }
        save_file(state, out, metadata=metadata)
