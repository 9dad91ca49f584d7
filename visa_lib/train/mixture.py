"""VISA's weighted data mixture as a ``torch.utils.data.Dataset`` that works in DataLoader workers.

VISA draws each training sample by first picking a data family with probability proportional to its
rate (``sem_seg 9, refer_seg 3, vqa 3, reason_seg 1, chatunivi 4, rvos 12`` in its 7B script), then,
for videos, a dataset by a second set of rates (``mevis 4000, refytvos 15000, davis17 400, revos 3000,
lvvis 3000``); the sample index is ignored and an epoch is a fixed number of draws (``docs/datasets.md``).

:class:`VisaMixture` keeps that recipe (one flat list of datasets, each with a rate) but makes sample
``i`` of epoch ``e`` a pure function of ``(seed, e, i)``: its generator is
``numpy.random.default_rng((seed, e, i))``. The same seed therefore gives the same samples with 0, 2
or 8 workers, on one process or split over ranks by a ``DistributedSampler``, and resuming at sample
``i`` needs no saved RNG state. A loop that counts samples globally may also index past the epoch:
``mixture[n + i]`` is sample ``i`` of the next epoch (``n = len(mixture)``).

A config (a dict, or a mixture file named by ``data:`` in a training config / ``visa train --data``)::

    {"seed": 0, "samples_per_epoch": 1000,
     "datasets": [{"name": "revos", "format": "revos", "root": "data/ReVOS", "split": "train", "rate": 3000},
                 {"name": "refcoco", "format": "refcoco", "root": "data/refer_seg", "rate": 3},
                 {"name": "llava", "format": "instruction", "root": "data/llava_instruct_150k.json",
                  "image_root": "data/coco/train2017", "rate": 3}]}

Formats: ``revos``, ``mevis``, ``lvvis``, ``refytvos``, ``davis17`` (videos); ``reasonseg``, ``refcoco``,
``refcoco+``, ``refcocog``, ``refclef`` (images); ``instruction`` (LLaVA / Chat-UniVi JSON). Options per
dataset: videos ``frame_range``, ``max_expressions``, ``negative_prob``, ``policy``; images
``max_expressions``, ``explanatory`` (and ReasonSeg ``explanatory_file``, refer ``split_by``,
``image_root``); instruction ``image_root``, ``video_root``, ``style``
(``llava`` or ``chatunivi``), ``frame_range``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visa_lib.paths import REASONVOS_LITE
from visa_lib.train.sample_builders import ImageSamples, InstructionSamples, SampleBuilder, VideoSamples
from visa_lib.train.step import VisaSample

#: VISA's family rates (``scripts/train_7b.sh``) and its video sub-rates; ``sem_seg`` is not read here.
VISA_FAMILY_RATES = {"sem_seg": 9, "refer_seg": 3, "vqa": 3, "reason_seg": 1, "chatunivi": 4, "rvos": 12}
VISA_RVOS_RATES = {"mevis": 4000, "refytvos": 15000, "davis17": 400, "revos": 3000, "lvvis": 3000}
VIDEO_FORMATS = ("revos", "mevis", "lvvis", "refytvos", "davis17")
IMAGE_FORMATS = ("reasonseg", "refcoco", "refcoco+", "refcocog", "refclef")
TEXT_FORMATS = ("instruction",)
_VIDEO_KNOBS = ("frame_range", "max_expressions", "negative_prob", "policy")


def family_rates(family_rates: Mapping[str, float], member_rates: Mapping[str, float], family: str) -> dict:
    """Flat rates of a family's members: ``family share x member share`` (VISA's two-level draw).

    Arguments:
      family_rates (Mapping[str, float]): e.g. :data:`VISA_FAMILY_RATES`.
      member_rates (Mapping[str, float]): e.g. :data:`VISA_RVOS_RATES`.
      family (str): the family the members belong to (e.g. ``"rvos"``).
    Returns:
      dict[str, float]: member -> probability of drawing it among all families.
    """
    share = family_rates[family] / sum(family_rates.values())
    total = sum(member_rates.values())
    return {name: share * rate / total for name, rate in member_rates.items()}


def samples_from_config(spec: Mapping[str, Any]) -> SampleBuilder:
    """Load one dataset from its config entry (``name``, ``format``, ``root``, ``split``, options).

    Raises:
      ValueError: an unknown format or option (the message lists the valid ones).
      FileNotFoundError / DatasetFormatError: from the dataset reader, naming the file.
    """
    spec = dict(spec)
    fmt = spec.pop("format", None)
    name = spec.pop("name", fmt)
    spec.pop("rate", None)
    if "root" not in spec:
        raise ValueError(f"dataset {name!r}: give 'root' (the dataset folder or JSON file)")
    root = Path(spec.pop("root"))
    split = spec.pop("split", "train")
    if fmt in VIDEO_FORMATS:
        from visa_lib.data import formats, revos

        loader = {
            "revos": revos.load_revos,
            "mevis": formats.load_mevis,
            "lvvis": formats.load_lvvis,
            "refytvos": formats.load_refytvos,
            "davis17": formats.load_davis17,
        }[fmt]
        knobs = {k: spec.pop(k) for k in _VIDEO_KNOBS if k in spec}
        builder: SampleBuilder = VideoSamples(name, loader(root, split), **knobs)
    elif fmt in IMAGE_FORMATS:
        from visa_lib.data.image_datasets import ReasonSegDataset, ReferSegDataset

        knobs = {k: spec.pop(k) for k in ("max_expressions", "explanatory") if k in spec}
        if fmt == "reasonseg":
            data = ReasonSegDataset(root, split, spec.pop("explanatory_file", None))
        else:
            data = ReferSegDataset(
                root, fmt, split, split_by=spec.pop("split_by", None), image_root=spec.pop("image_root", None)
            )
        builder = ImageSamples(name, data, **knobs)
    elif fmt in TEXT_FORMATS:
        from visa_lib.data.instruction import InstructionDataset

        data = InstructionDataset(root, spec.pop("image_root", None), spec.pop("video_root", None))
        knobs = {k: spec.pop(k) for k in ("style", "frame_range") if k in spec}
        builder = InstructionSamples(name, data, **knobs)
    else:
        valid = ", ".join(VIDEO_FORMATS + IMAGE_FORMATS + TEXT_FORMATS)
        raise ValueError(f"dataset {name!r}: unknown format {fmt!r}; use one of {valid}")
    if spec:
        raise ValueError(f"dataset {name!r} ({fmt}): unknown option(s) {sorted(spec)}")
    return builder


class VisaMixture(torch.utils.data.Dataset):
    """A virtual epoch of ``samples_per_epoch`` draws from weighted datasets (map-style, worker-safe).

    Arguments:
      builders (Sequence[SampleBuilder]): one per dataset, e.g.
        :class:`~visa_lib.train.sample_builders.VideoSamples`.
      rates (Sequence[float]): one non-negative rate per dataset (normalised here).
      samples_per_epoch (int): ``len(self)``; VISA: batch x grad. accumulation x steps x GPUs.
      seed (int): sample ``i`` of epoch ``e`` uses ``numpy.random.default_rng((seed, e, i))``.
    Returns from ``self[i]``:
      VisaSample with raw ``uint8`` frames and ``dataset`` set to the builder's name.
    """

    def __init__(
        self, builders: Sequence[SampleBuilder], rates: Sequence[float], samples_per_epoch: int, seed: int = 0
    ) -> None:
        if not builders or len(builders) != len(rates):
            raise ValueError(
                f"VisaMixture: give one rate per dataset ({len(builders)} datasets, {len(rates)} rates)"
            )
        rates = np.asarray(rates, dtype=float)
        if (rates < 0).any() or rates.sum() <= 0:
            raise ValueError(f"VisaMixture: rates must be >= 0 with a positive sum, got {rates.tolist()}")
        if samples_per_epoch < 1:
            raise ValueError(f"VisaMixture: samples_per_epoch must be >= 1, got {samples_per_epoch}")
        self.builders = list(builders)
        self.probabilities = rates / rates.sum()
        self.samples_per_epoch = int(samples_per_epoch)
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __repr__(self) -> str:
        parts = ", ".join(f"{b.name} {p:.3f}" for b, p in zip(self.builders, self.probabilities, strict=True))
        return f"VisaMixture({parts}; {self.samples_per_epoch} per epoch, seed {self.seed})"

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s samples next (call before iterating a new epoch's DataLoader)."""
        self.epoch = int(epoch)

    def dataset_index(self, index: int) -> int:
        """Which dataset (index into ``builders``) sample ``index`` of the current epoch comes from."""
        return int(self._rng(index).choice(len(self.builders), p=self.probabilities))

    def _rng(self, index: int) -> np.random.Generator:
        if index < 0:
            raise IndexError(f"VisaMixture: index {index} is negative")
        # index n + i of epoch e is index i of epoch e + 1: a global sample counter works across epochs
        epoch, position = divmod(int(index), self.samples_per_epoch)
        return np.random.default_rng((self.seed, self.epoch + epoch, position))

    def __getitem__(self, index: int) -> VisaSample:
        """Sample ``index`` of the current epoch (indices past ``len(self)`` run on into the next epochs)."""
        rng = self._rng(index)
        builder = self.builders[int(rng.choice(len(self.builders), p=self.probabilities))]
        return builder.draw(rng)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> VisaMixture:
        """Build from ``{"datasets": [...], "samples_per_epoch": n, "seed": s}`` (module docstring)."""
        unknown = set(config) - {"datasets", "samples_per_epoch", "seed"}
        if unknown:
            raise ValueError(
                f"data config: unknown key(s) {sorted(unknown)}; use datasets, samples_per_epoch, seed"
            )
        specs = config.get("datasets") or []
        if not specs:
            raise ValueError("data config: 'datasets' must list at least one dataset")
        builders = [samples_from_config(spec) for spec in specs]
        rates = [float(spec.get("rate", 1.0)) for spec in specs]
        return cls(builders, rates, int(config.get("samples_per_epoch", 1000)), int(config.get("seed", 0)))


def default_mixture(
    samples_per_epoch: int = 1000, seed: int = 0, root: str | Path | None = None
) -> VisaMixture:
    """The toy's mixture: the bundled ReasonVOS-lite ``train`` split as the only (ReVOS-format) dataset."""
    lite = {"name": "reasonvos_lite", "format": "revos", "root": str(root or REASONVOS_LITE)}
    config = {"datasets": [lite], "samples_per_epoch": samples_per_epoch, "seed": seed}
    return VisaMixture.from_config(config)


def collate_samples(batch: list[VisaSample]) -> list[VisaSample]:
    """DataLoader ``collate_fn``: keep the samples as a list (each has its own frame count and size)."""
    return list(batch)


def data_loader(
    mixture: VisaMixture, batch_size: int = 1, num_workers: int = 0, **kwargs: Any
) -> torch.utils.data.DataLoader:
    """A DataLoader over ``mixture`` yielding ``list[VisaSample]`` batches, in index order.

    Worker processes only decode files; which sample index ``i`` holds is fixed by the mixture's seed,
    so ``num_workers`` never changes the data. Extra ``kwargs`` go to ``DataLoader`` (e.g. ``sampler=``
    a ``DistributedSampler(mixture, shuffle=False)`` to split the indices over ranks).
    """
    return torch.utils.data.DataLoader(
        mixture,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_samples,
        persistent_workers=False,
        **kwargs,
    )
