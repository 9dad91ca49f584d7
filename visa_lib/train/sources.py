"""Where training samples come from: an indexable of ``VisaSample`` that the loop reads by global index.

The training loop asks for sample ``i`` of the run (``i = step x global batch + rank offset + k``),
so every process of a multi-GPU run takes a disjoint share of one sequence, one process with
gradient accumulation sees exactly the same samples as several processes, and a resumed run
continues where it stopped. Two kinds of source fit:

* any map-style dataset whose ``__getitem__(i)`` returns a ``VisaSample`` (VISA's mixture draws at
  random from the index, as VISA's ``HybridDataset`` ignores it);
* :class:`SampleStream`: samples drawn one after another from one ``numpy`` generator (the toy's
  ReVOS sampler), served in increasing index order; samples of other processes are drawn and
  skipped so every process keeps the same generator state.

:func:`revos_sources` builds the two streams of a ReVOS-format root (the text-only warm-up of a toy
LLM and VISA's clips) from a :class:`~visa_lib.train.config.TrainConfig`.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visa_lib.data.revos import RevosSplit, load_revos
from visa_lib.model.visa import VisaModel
from visa_lib.paths import REASONVOS_LITE
from visa_lib.train.config import TrainConfig
from visa_lib.train.revos_samples import (
    FrameFeatureCache,
    draw_training_sample,
    draw_warmup_sample,
    drop_no_target_expressions,
)
from visa_lib.train.step import VisaSample


class SampleStream:
    """Samples drawn in order from ``draw(rng)``, read by increasing global index.

    Arguments:
      draw (Callable[[np.random.Generator], VisaSample]): one sample per call.
      rng (np.random.Generator): shared with other streams of the run if they follow each other.
    """

    def __init__(self, draw: Callable[[np.random.Generator], VisaSample], rng: np.random.Generator) -> None:
        self.draw = draw
        self.rng = rng
        self.position = 0  # index of the next sample to draw

    def __getitem__(self, index: int) -> VisaSample:
        if index < self.position:
            raise IndexError(
                f"SampleStream: sample {index} was already drawn (next is {self.position}); "
                "a stream is read in increasing order"
            )
        while True:
            sample = self.draw(self.rng)
            self.position += 1
            if self.position - 1 == index:
                return sample

    def skip_to(self, position: int) -> None:
        """Draw and drop samples until ``position`` is next (every process ends a step in one state)."""
        while self.position < position:
            self.draw(self.rng)
            self.position += 1

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])


@dataclass
class TrainingData:
    """The samples of a run: VISA's clips, the optional text-only warm-up, the validation split.

    Attributes:
      visa (indexable of VisaSample): VISA's samples (a ``SampleStream`` or a map-style dataset).
      text_warmup (indexable of VisaSample | None): text-only samples for a toy LLM from scratch.
      rng (np.random.Generator | None): the generator the streams share (saved in checkpoints).
      train_split (RevosSplit | None), valid_split (RevosSplit | None): the loaded splits.
    """

    visa: object
    text_warmup: object | None = None
    rng: np.random.Generator | None = None
    train_split: RevosSplit | None = None
    valid_split: RevosSplit | None = None

    def streams(self) -> dict[str, object]:
        return {"visa": self.visa, "text_warmup": self.text_warmup}

    def state_dict(self) -> dict:
        state = {name: s.state_dict() for name, s in self.streams().items() if hasattr(s, "state_dict")}
        if self.rng is not None:
            state["rng"] = self.rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict) -> None:
        for name, stream in self.streams().items():
            if name in state and hasattr(stream, "load_state_dict"):
                stream.load_state_dict(state[name])
        if self.rng is not None and "rng" in state:
            self.rng.bit_generator.state = state["rng"]


def load_training_split(config: TrainConfig) -> RevosSplit:
    """The training split of ``config`` (generated ReasonVOS-lite videos when asked)."""
    if config.generate_train_videos > 0:  # the shipped 48 toy videos are too few to generalise from
        from visa_lib.data.reasonvos_lite.generator import generate_split

        root = Path(tempfile.mkdtemp(prefix="visa_train_videos_"))
        generate_split(root, config.train_split, seed=0, num_videos=config.generate_train_videos)
        return load_revos(root, config.train_split)
    return load_revos(config.data_root or REASONVOS_LITE, config.train_split)


def revos_sources(config: TrainConfig, model: VisaModel, progress: bool = True) -> TrainingData:
    """VISA's clip sampler (and the text-only warm-up) over a ReVOS-format root.

    One generator seeded with ``config.seed`` feeds the warm-up stream, then VISA's.
    """
    train = load_training_split(config)
    if not config.with_empty_targets:
        drop_no_target_expressions(train)
    valid = None
    if config.eval_every:
        valid = load_revos(config.val_root or config.data_root or REASONVOS_LITE, config.val_split)
    cache = FrameFeatureCache(model, train, keep=config.cache_features)
    rng = np.random.default_rng(config.seed)
    warmup = None
    if config.text_warmup_steps:
        descriptions = None
        if config.text_warmup_answer == "target":
            from visa_lib.train.target_descriptions import generated_object_descriptions

            descriptions = generated_object_descriptions(train, config.train_split, seed=0, progress=progress)
        draw = functools.partial(
            draw_warmup_sample, cache, frame_range=config.frames, descriptions=descriptions
        )
        warmup = SampleStream(draw, rng)
    kwargs = {} if config.with_empty_targets else {"negative_prob": 0.0}
    visa = SampleStream(
        functools.partial(draw_training_sample, cache, frame_range=config.frames, **kwargs), rng
    )
    return TrainingData(visa=visa, text_warmup=warmup, rng=rng, train_split=train, valid_split=valid)
