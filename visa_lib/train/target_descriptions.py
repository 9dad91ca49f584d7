"""What each object of a ReasonVOS-lite video is ("cat", "red square"), for the toy LLM's warm-up.

The ReVOS format stores no per-object category, but ReasonVOS-lite is generated: video ``v`` of a
split written with seed ``s`` comes from ``make_video(video_rng(s, v))``, whose ``objects[k]`` is
object id ``k + 1``. Regenerating the videos (about 0.7 s each on one core) gives their
descriptions back. The warm-up then answers a query with the description of its TARGET, so the
state right before the answer's first word -- the state VISA later reads for ``[SEG]`` -- has to
resolve the query against the video (answering with the query itself only makes that state
predict the query's first word, "the" or "which", which carries almost nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from visa_lib.data.revos import RevosSplit
from visa_lib.data.sampling import EVAL_MAX_REFERENCES, eval_reference_frames
from visa_lib.model.visa import VisaModel

#: Warm-up answer for an expression without a target ("no" and "object" are in the toy vocabulary).
NO_TARGET_ANSWER = "It is no object."


def generated_object_descriptions(
    split: RevosSplit, split_name: str, seed: int = 0, progress: bool = True
) -> dict[str, list[str]]:
    """Descriptions of every object of every video of a generated ReasonVOS-lite split.

    Arguments:
      split (RevosSplit): the split as loaded from disk (its video names are checked).
      split_name (str): "train" or "valid", as passed to ``generate_split``.
      seed (int): the generator seed of that split (``generator.SHIPPED_SEEDS`` for the bundled ones).
      progress (bool): tqdm bar.
    Returns:
      dict[str, list[str]]: video name -> description of object id ``k + 1`` at index ``k``.
    Raises:
      ValueError: when the regenerated videos do not match the split's (``generator.regenerate_infos``).
    """
    from visa_lib.data.reasonvos_lite.generator import regenerate_infos

    infos = regenerate_infos(split, split_name, seed, progress=progress)
    return {
        name: [" ".join(w for w in (o.colour, o.category) if w) for o in info.objects]
        for name, info in infos.items()
    }


def target_answer(descriptions: Sequence[str], obj_ids: Sequence[int]) -> str:
    """``"It is {description}."`` for the target objects (distinct descriptions joined by "and").

    Arguments:
      descriptions (Sequence[str]): of object id ``k + 1`` at index ``k``.
      obj_ids (Sequence[int]): the expression's target object ids (1-based; empty = no target).
    Returns:
      str: e.g. "It is red square and cat." or :data:`NO_TARGET_ANSWER`.
    """
    if not obj_ids:
        return NO_TARGET_ANSWER
    names = list(dict.fromkeys(descriptions[i - 1] for i in obj_ids))
    return f"It is {' and '.join(names)}."


@torch.no_grad()
def warmup_answer_accuracy(
    model: VisaModel,
    split: RevosSplit,
    descriptions: dict[str, list[str]],
    items: Sequence[tuple[str, str, int]],
    max_refs: int = EVAL_MAX_REFERENCES,
    progress: bool = True,
) -> float:
    """How often a warmed-up toy LLM names the target: greedy answer == :func:`target_answer`.

    The clip of each ``(video, exp_id, target frame)`` is the one VISA's evaluation uses
    (``eval_reference_frames``) and the question is template 0 with the lower-cased query. Words
    are compared ignoring spaces and case.

    Arguments:
      model (VisaModel): after the text-only warm-up (before the ``[SEG]`` phase).
      split (RevosSplit), descriptions (dict): the data and :func:`generated_object_descriptions`.
      items (Sequence[tuple[str, str, int]]): e.g. ``pick_target_frames(split)``.
      max_refs (int): reference budget.
      progress (bool): tqdm bar.
    Returns:
      float: share of exact answers, 0-1.
    """
    model.eval()
    right = 0
    for video, exp_id, target in tqdm(items, desc="warm-up answers", disable=not progress):
        meta = split.videos[video]
        exp = meta.expressions[exp_id]
        refs = eval_reference_frames(len(meta.frames), target, max_refs)
        frames = np.stack([split.read_frame(video, t) for t in refs])
        query = " ".join(exp.text.lower().split())
        answer = model.generate(frames, split.read_frame(video, target), query, max_new_tokens=12).text
        want = target_answer(descriptions[video], exp.obj_ids)
        right += answer.lower().replace(" ", "") == want.lower().replace(" ", "")
    return right / max(1, len(items))
