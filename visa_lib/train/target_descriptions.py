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

from visa_lib.data.revos import RevosSplit

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
