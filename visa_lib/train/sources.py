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
LLM and VISA's clips) from a :class:`~visa_lib.train.config.TrainConfig`; :func:`mixture_sources`
builds VISA's weighted mixture from a mixture file (``data: mixture.yaml``). :func:`micro_batches` is
how the loop reads them: in its own process, or through DataLoader workers (``num_workers``) with a
sampler (:class:`ProcessShare`) that yields exactly the global indices the process would read itself.
"""

from __future__ import annotations

import functools
import itertools
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from visa_lib.data.revos import RevosSplit, load_revos
from visa_lib.model.visa import VisaModel
from visa_lib.paths import REASONVOS_LITE
from visa_lib.train.config import TrainConfig, read_mapping_file
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
    valid = load_validation_split(config)
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
    visa = SampleStream(
        functools.partial(
            draw_training_sample, cache, frame_range=config.frames, negative_prob=config.negative_frame_prob()
        ),
        rng,
    )
    return TrainingData(visa=visa, text_warmup=warmup, rng=rng, train_split=train, valid_split=valid)


def load_validation_split(config: TrainConfig) -> RevosSplit | None:
    """The validation split when ``eval_every`` asks for one (default: ``data_root``, else ReasonVOS-lite)."""
    if not config.eval_every:
        return None
    return load_revos(config.val_root or config.data_root or REASONVOS_LITE, config.val_split)


def load_mixture_file(path: str | Path):  # -> visa_lib.train.mixture.VisaMixture
    """VISA's mixture from a ``.yaml``/``.json`` file of ``{"datasets": [...], ...}`` (``docs/datasets.md``).

    Raises:
      FileNotFoundError / ValueError: one line naming the file (a bad key, format, root or layout).
    """
    from visa_lib.train.mixture import VisaMixture

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mixture file {path} does not exist; pass data: a .yaml/.json mixture file")
    config = read_mapping_file(path, "'datasets', 'samples_per_epoch', 'seed' to values")
    try:
        return VisaMixture.from_config(config)
    except (ValueError, TypeError, OSError) as err:  # DatasetFormatError is a ValueError
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise ValueError(f"mixture file {path}: {first}") from None


def mixture_sources(config: TrainConfig) -> TrainingData:
    """VISA's weighted mixture named by ``config.data`` (no text-only warm-up; validation as for ReVOS)."""
    return TrainingData(visa=load_mixture_file(config.data), valid_split=load_validation_split(config))


def training_sources(config: TrainConfig, model: VisaModel, progress: bool = True) -> TrainingData:
    """The data of ``config``: a mixture file, or VISA's clip stream over a ReVOS-format root."""
    if config.uses_mixture():
        return mixture_sources(config)
    return revos_sources(config, model, progress=progress)


class ProcessShare(torch.utils.data.Sampler):
    """The global sample indices one process reads for optimizer steps ``start .. steps - 1``.

    Step ``s`` reads ``global_batch = per_process x num_processes`` samples; process ``rank`` takes the
    block ``s x global_batch + rank x per_process + [0, per_process)`` (with ``per_process = 1`` this is
    ``DistributedSampler(shuffle=False)``'s interleaving). Indices may run past ``len(dataset)``: a
    mixture serves them from its next epochs.
    """

    def __init__(
        self, start: int, steps: int, per_process: int, num_processes: int = 1, rank: int = 0
    ) -> None:
        self.start, self.steps, self.per_process = start, steps, per_process
        self.global_batch = per_process * num_processes
        self.offset = rank * per_process

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start, self.steps):
            first = step * self.global_batch + self.offset
            yield from range(first, first + self.per_process)

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * self.per_process


def micro_batches(
    data: object, share: ProcessShare, micro_batch: int, num_workers: int = 0
) -> Iterator[list[VisaSample]]:
    """The samples of ``share`` in micro-batches of ``micro_batch`` (``list[VisaSample]`` each).

    ``num_workers = 0`` reads ``data[i]`` lazily in this process (a ``SampleStream`` needs that: it is
    drawn in order); otherwise a DataLoader's worker processes load them (a map-style dataset whose
    sample ``i`` does not depend on who loads it, like ``VisaMixture``), so the samples are the same.
    """
    if num_workers == 0:
        indices = iter(share)
        while True:
            batch = [data[i] for i in itertools.islice(indices, micro_batch)]
            if not batch:
                return
            yield batch
    if not hasattr(data, "__len__") or isinstance(data, SampleStream):
        raise ValueError("num_workers > 0 needs a map-style dataset (a mixture), not a sample stream")
    from visa_lib.train.mixture import data_loader

    # Its own generator: seeding the workers must not draw from the global torch RNG (LoRA dropout's).
    generator = torch.Generator().manual_seed(0)
    yield from data_loader(
        data, batch_size=micro_batch, num_workers=num_workers, sampler=share, generator=generator
    )
