"""VISA's sample construction for each data family: videos, single images, instruction conversations.

Every builder has a ``name`` and ``draw(rng) -> VisaSample`` holding raw frames (``uint8``), the
expressions, the ground-truth masks at the target frame and the template choices; all randomness comes
from ``rng``, so a sample is a pure function of the generator's seed (``docs/datasets.md``).

* :class:`VideoSamples` (ReVOS, MeViS, LV-VIS, Ref-YouTube-VOS, Ref-DAVIS17): VISA's clip -- 8-12
  reference frames, one per equal segment; the target frame is one of them; up to 3 expressions; with
  probability 0.05 the target frame comes from another video and every mask is empty
  (``visa_lib.data.sampling.sample_training_clip``); a random question and answer template each.
* :class:`ImageSamples` (ReasonSeg, refCOCO family): the image is both the single reference frame and
  the target image; up to 3 of its queries, each with its own mask.
* :class:`InstructionSamples` (LLaVA / Chat-UniVi JSON): the conversation with one ``<image>`` slot per
  image (or per frame of 8-12 drawn from its video), placed as VISA places them for LLaVA or Chat-UniVi
  data (``visa_lib.train.conversation.instruction_turns``); no ``[SEG]``, no mask, CE loss on the answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from visa_lib.data.image_datasets import read_image
from visa_lib.data.instruction import InstructionDataset
from visa_lib.data.revos import RevosSplit
from visa_lib.data.sampling import (
    MAX_EXPRESSIONS,
    NEGATIVE_PROB,
    TRAIN_FRAME_RANGE,
    sample_training_clip,
    uniform_segment_frames,
)
from visa_lib.model.prompts import (
    ANSWER_LIST,
    LONG_QUESTION_LIST,
    SHORT_QUESTION_LIST,
    build_conversation,
    expand_video_slot,
)
from visa_lib.model.vision import VisionTower
from visa_lib.train.conversation import (
    EXPLANATORY_QUESTION_LIST,
    INSTRUCTION_STYLES,
    image_slots,
    instruction_prompt,
    instruction_turns,
)
from visa_lib.train.revos_samples import clip_ground_truth, draw_templates
from visa_lib.train.step import VisaSample


class SampleBuilder(Protocol):
    """Anything the mixture can draw from."""

    name: str

    def draw(self, rng: np.random.Generator) -> VisaSample: ...


class ImageSegData(Protocol):
    """What :class:`ImageSamples` needs (``ReasonSegDataset``, ``ReferSegDataset``)."""

    def __len__(self) -> int: ...
    def queries(self, index: int) -> list[str]: ...
    def is_sentence(self, index: int) -> bool: ...
    def explanation(self, index: int) -> str | None: ...
    def read_image(self, index: int) -> np.ndarray: ...
    def masks(self, index: int, picks: Sequence[int], size: tuple[int, int]) -> np.ndarray: ...


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``uint8 [H,W,3]`` resized to ``(height, width)`` (frames of one sample must share a size)."""
    import cv2

    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


class VideoSamples:
    """VISA's training clips from a referring / reasoning video split.

    Arguments:
      name (str): the dataset's name in the mixture (e.g. ``"revos"``).
      split (RevosSplit): from ``load_revos``, ``load_mevis``, ``load_lvvis``, ``load_refytvos`` or
        ``load_davis17``.
      frame_range (tuple[int, int]): inclusive range of the number of reference frames (VISA: 8-12).
      max_expressions (int): expressions per clip (VISA: 3).
      negative_prob (float): probability of a target frame from another video (VISA: 0.05).
      policy (str): ``"uniform"`` (one frame per segment, VISA's default) or ``"random"``.
    """

    def __init__(
        self,
        name: str,
        split: RevosSplit,
        frame_range: tuple[int, int] = TRAIN_FRAME_RANGE,
        max_expressions: int = MAX_EXPRESSIONS,
        negative_prob: float = NEGATIVE_PROB,
        policy: str = "uniform",
    ) -> None:
        self.name, self.split = name, split
        self.frame_range, self.max_expressions = tuple(frame_range), max_expressions
        self.negative_prob, self.policy = negative_prob, policy

    def __repr__(self) -> str:
        return f"VideoSamples({self.name!r}, {self.split!r})"

    def draw(self, rng: np.random.Generator) -> VisaSample:
        """One clip: references ``uint8 [T,H,W,3]``, target ``uint8 [H,W,3]``, ``gt_masks bool [N,H,W]``."""
        split = self.split
        clip = sample_training_clip(
            split.videos,
            rng,
            frame_range=self.frame_range,
            max_expressions=self.max_expressions,
            negative_prob=self.negative_prob,
            policy=self.policy,
        )
        meta = split.videos[clip.video]
        expressions = [meta.expressions[e].text.strip() for e in clip.expression_ids]
        questions, answers = draw_templates(expressions, rng)
        refs = np.stack([split.read_frame(clip.video, i) for i in clip.reference_frames])
        target = split.read_frame(clip.target_video, clip.target_frame)
        gt = clip_ground_truth(split, clip)
        if target.shape != refs.shape[1:]:  # a negative frame of another size: all masks are empty anyway
            target = _resize(target, *refs.shape[1:3])
            gt = np.zeros((len(expressions), *refs.shape[1:3]), dtype=bool)
        return VisaSample(refs, target, expressions, gt, questions, answers, dataset=self.name)


class ImageSamples:
    """Single-image samples: the image is the one reference frame and the target image.

    VISA's rules for image data: the question list follows the dataset's ``is_sentence`` flag (long list
    with the text as written for ReasonSeg sentences, short list with the text lower-cased otherwise --
    refer sentences always); up to 3 queries drawn without replacement. A ReasonSeg image with an
    explanation is, with probability ``explanatory``, a text-only sample (the query, then the explanation
    as the answer, no mask, the image once); otherwise, with even odds, a plain sample or one whose
    question asks for an explanation and whose answer is ``[SEG]`` followed by it.

    Arguments:
      name (str): the dataset's name in the mixture.
      data (ImageSegData): a ``ReasonSegDataset`` or ``ReferSegDataset``.
      max_expressions (int): queries per sample (VISA: 3).
      explanatory (float): probability of the text-only variant for images with an explanation (VISA: 0.1).
    """

    def __init__(
        self, name: str, data: ImageSegData, max_expressions: int = MAX_EXPRESSIONS, explanatory: float = 0.1
    ) -> None:
        self.name, self.data = name, data
        self.max_expressions, self.explanatory = max_expressions, explanatory

    def __repr__(self) -> str:
        return f"ImageSamples({self.name!r}, {self.data!r})"

    def draw(self, rng: np.random.Generator) -> VisaSample:
        """One image: references ``uint8 [1,H,W,3]`` (``[0,H,W,3]`` when text-only), the image as target,
        ``gt_masks bool [N,H,W]`` (``[0,H,W]`` when text-only) and one prompt per query."""
        index = int(rng.integers(len(self.data)))
        queries = self.data.queries(index)
        count = min(self.max_expressions, len(queries))
        picks = [int(i) for i in rng.choice(len(queries), count, replace=False)]
        texts = [queries[i] for i in picks]
        sentence = self.data.is_sentence(index)
        explanation = self.data.explanation(index)
        variant = "plain"
        if explanation is not None:
            variant = (
                "text" if rng.random() < self.explanatory else ("plain", "explained")[int(rng.integers(2))]
            )
        image = self.data.read_image(index)
        if variant == "text":  # the explanation alone: "(0)<image>\n{query}" -> explanation, no [SEG]
            prompts = [instruction_prompt([(image_slots(1) + "\n" + text, explanation)]) for text in texts]
            empty = np.zeros((0, *image.shape[:2]), dtype=bool)
            return VisaSample(image[None][:0], image, texts, empty, prompts=prompts, dataset=self.name)
        prompts = []
        for text in texts:
            answer = ANSWER_LIST[int(rng.integers(len(ANSWER_LIST)))]
            if variant == "explained":
                template = EXPLANATORY_QUESTION_LIST[int(rng.integers(len(EXPLANATORY_QUESTION_LIST)))]
                question, answer = template.format(sent=text.lower()), f"{answer} {explanation}"
            elif sentence:
                question = LONG_QUESTION_LIST[int(rng.integers(len(LONG_QUESTION_LIST)))].format(sent=text)
            else:
                question = SHORT_QUESTION_LIST[int(rng.integers(len(SHORT_QUESTION_LIST)))].format(
                    sent=text.lower()
                )
            prompts.append(build_conversation(expand_video_slot(question, 1), answer))
        gt = self.data.masks(index, picks, image.shape[:2])
        return VisaSample(image[None], image, texts, gt, prompts=prompts, dataset=self.name)


#: CLIP's mean colour on 0-255, the background Chat-UniVi pads its images with.
CLIP_MEAN_COLOR = tuple(int(c * 255) for c in VisionTower.pixel_mean)


def _pad_to_square(image: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    """``uint8 [H,W,3]`` centred on a ``color`` square of side ``max(H, W)`` (Chat-UniVi's ``pad`` images)."""
    height, width = image.shape[:2]
    side = max(height, width)
    square = np.empty((side, side, 3), dtype=np.uint8)
    square[...] = color
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = image
    return square


class InstructionSamples:
    """Instruction conversations (text answers only) with their images or video frames.

    Arguments:
      name (str): the dataset's name in the mixture.
      data (InstructionDataset): the conversations.
      style (str): ``"llava"`` (LLaVA-Instruct: every round, slots before the first question) or
        ``"chatunivi"`` (Chat-UniVi's sets: the last round, slots where the placeholders are, images
        padded to a square with CLIP's mean colour); see ``instruction_turns``.
      frame_range (tuple[int, int]): frames drawn from a video entry (Chat-UniVi data in VISA: 8-12).
    Raises:
      ValueError: an unknown style; an entry with neither an image nor a video (every ``<image>`` slot
        needs a frame).
    """

    def __init__(
        self,
        name: str,
        data: InstructionDataset,
        style: str = "llava",
        frame_range: tuple[int, int] = TRAIN_FRAME_RANGE,
    ) -> None:
        if style not in INSTRUCTION_STYLES:
            raise ValueError(f"dataset {name!r}: style {style!r} is unknown; use one of {INSTRUCTION_STYLES}")
        items = [data.item(k) for k in range(len(data))]
        blind = [k for k, item in enumerate(items) if not item.image_paths and item.video_path is None]
        if blind:
            raise ValueError(
                f"{data.json_path}: {len(blind)} entries (first: {blind[0]}) have no 'image' or 'video'; "
                "VISA's model needs at least one frame per sample, so drop or pair these conversations"
            )
        self.name, self.data, self.style, self.frame_range = name, data, style, tuple(frame_range)

    def __repr__(self) -> str:
        return f"InstructionSamples({self.name!r}, {self.data!r}, style={self.style!r})"

    def _frames(self, index: int, rng: np.random.Generator) -> np.ndarray:
        from visa_lib.data.video import VideoFrames

        item = self.data.item(index)
        if item.video_path is not None:
            video = VideoFrames(item.video_path)
            count = int(rng.integers(self.frame_range[0], self.frame_range[1] + 1))
            return np.stack([video[i] for i in uniform_segment_frames(len(video), count, rng)])
        images = [read_image(path) for path in item.image_paths]
        if self.style == "chatunivi":
            images = [_pad_to_square(image, CLIP_MEAN_COLOR) for image in images]
        height, width = images[0].shape[:2]
        return np.stack([_resize(image, height, width) for image in images])

    def draw(self, rng: np.random.Generator) -> VisaSample:
        """One conversation: its K frames (the last is ``target_image``), ``gt_masks bool [0,H,W]``."""
        index = int(rng.integers(len(self.data)))
        frames = self._frames(index, rng)
        turns = instruction_turns(self.data.item(index).turns, len(frames), self.style)
        return VisaSample(
            reference_frames=frames[:-1],
            target_image=frames[-1],
            expressions=[turns[0][0]],
            gt_masks=np.zeros((0, *frames.shape[1:3]), dtype=bool),
            prompts=[instruction_prompt(turns)],
            dataset=self.name,
        )
