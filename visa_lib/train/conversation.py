"""Free multi-round conversations (instruction data) in VISA's ``llava_v1`` template, tokenized with labels.

The VISA question templates (``visa_lib.model.prompts``) cover segmentation samples. Instruction data
(LLaVA, Chat-UniVi) brings its own questions and answers, possibly over several rounds::

    {SYSTEM} USER: (0)<image>\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>

As in VISA, the loss falls on every answer and its ``</s>``; the system message, the questions and the
image slots carry ``IGNORE_INDEX``. :func:`instruction_turns` gives the rounds VISA trains on and puts
one ``<image>`` slot per frame where VISA puts it, which differs for LLaVA and Chat-UniVi data.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from visa_lib.model.prompts import (
    _SLOTS,
    ASSISTANT_ROLE,
    IGNORE_INDEX,
    IMAGE_TOKEN,
    IMAGE_TOKEN_INDEX,
    SEP,
    SEP2,
    USER_ROLE,
    VIDEO_TOKEN,
    build_conversation,
)
from visa_lib.model.tokenizer import tokenize_prompt
from visa_lib.model.visa import Conversations

#: Questions of ReasonSeg samples that answer with ``[SEG]`` and an explanation (VISA's list; the
#: missing space in the first one is VISA's). It belongs beside the other templates in
#: ``visa_lib.model.prompts`` and shares their slot prefix.
EXPLANATORY_QUESTION_LIST: tuple[str, ...] = (
    _SLOTS + "{sent}Please output segmentation mask in the Target Image and explain why.",
    _SLOTS + "{sent} Please output segmentation mask in the Target Image and explain the reason.",
    _SLOTS + "{sent} Please output segmentation mask in the Target Image and give some explanation.",
)


def image_slots(num_images: int) -> str:
    """``"(0)<image>, (1)<image>, ..."`` for ``num_images`` frames (empty for none), as VISA numbers them."""
    return ", ".join(f"({i}){IMAGE_TOKEN}" for i in range(num_images))


#: Where VISA puts the frame slots of instruction data: LLaVA-Instruct or Chat-UniVi's sets.
INSTRUCTION_STYLES = ("llava", "chatunivi")


def _without_placeholders(text: str) -> str:
    return text.replace(IMAGE_TOKEN, "").replace(VIDEO_TOKEN, "").strip()


def _chatunivi_question(question: str, num_frames: int) -> str:
    """Chat-UniVi's question with its slots: ``<video>`` -> numbered slots, ``<image><image>`` likewise."""
    if question.endswith(IMAGE_TOKEN):  # ScienceQA writes the image last; VISA moves it to the front
        question = IMAGE_TOKEN + "\n" + _without_placeholders(question)
    if question.count(VIDEO_TOKEN) == 1:
        question = question.replace(VIDEO_TOKEN, image_slots(num_frames))
    elif num_frames > 1 and IMAGE_TOKEN * num_frames in question:
        question = question.replace(IMAGE_TOKEN * num_frames, image_slots(num_frames), 1)
    if question.count(IMAGE_TOKEN) != num_frames or VIDEO_TOKEN in question:
        # VISA would feed frames without slots; here every frame needs its slot, so they go first
        question = image_slots(num_frames) + "\n" + _without_placeholders(question)
    return question


def instruction_turns(
    turns: Sequence[tuple[str, str]], num_frames: int, style: str = "llava"
) -> list[tuple[str, str]]:
    """The rounds VISA trains on, with exactly one ``<image>`` slot per frame (``docs/datasets.md``).

    ``"llava"`` (LLaVA-Instruct): every round; the placeholders are removed and the numbered slots
    ``"(0)<image>, ...\n"`` open the first question that had one (the first question if none had).
    ``"chatunivi"`` (Chat-UniVi's sets): the last round only; ``<video>`` and ``<image><image>`` become
    numbered slots, a single ``<image>`` stays where it is written (a trailing one moves to the front);
    a question whose placeholders do not match the frames gets numbered slots in front instead.

    Arguments:
      turns (Sequence[tuple[str, str]]): ``(question, answer)`` rounds as read (placeholders kept).
      num_frames (int): images, or frames drawn from the video (>= 1).
      style (str): one of :data:`INSTRUCTION_STYLES`.
    Returns:
      list[tuple[str, str]]: rounds for :func:`instruction_prompt`; answers carry no placeholder.
    """
    if style not in INSTRUCTION_STYLES:
        raise ValueError(f"instruction style {style!r} is unknown; use one of {INSTRUCTION_STYLES}")
    if not turns or num_frames < 1:
        raise ValueError("instruction_turns: give at least one round and one frame")
    if style == "chatunivi":
        question, answer = turns[-1]
        return [(_chatunivi_question(question.strip(), num_frames), _without_placeholders(answer))]
    marked = [k for k, (q, _) in enumerate(turns) if IMAGE_TOKEN in q or VIDEO_TOKEN in q]
    first = marked[0] if marked else 0
    rounds = []
    for k, (question, answer) in enumerate(turns):
        question = _without_placeholders(question)
        if k == first:
            question = image_slots(num_frames) + "\n" + question
        rounds.append((question, _without_placeholders(answer)))
    return rounds


def instruction_prompt(turns: Sequence[tuple[str, str]]) -> str:
    """The ``llava_v1`` text of a multi-round conversation.

    Arguments:
      turns (Sequence[tuple[str, str]]): ``(question, answer)`` rounds; the questions already hold their
        ``<image>`` slots (e.g. ``image_slots(1) + "\n" + question``).
    Returns:
      str: ``"{SYSTEM} USER: {q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>..."``.
    """
    if not turns:
        raise ValueError("instruction_prompt: give at least one (question, answer) round")
    first_question, first_answer = turns[0]
    text = build_conversation(first_question, first_answer)
    for question, answer in turns[1:]:
        text += USER_ROLE + ": " + question + SEP + ASSISTANT_ROLE + ": " + answer + SEP2
    return text


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def conversation_labels(tokenizer, prompt: str) -> tuple[list[int], list[int]]:
    """Input ids and labels with the loss on every assistant answer (and its ``</s>``) of ``prompt``.

    Each answer's token span is found by tokenizing the prompt up to the answer's start and end and
    taking the common prefix with the full tokenization (exact for sentencepiece and the toy tokenizer).

    Arguments:
      tokenizer: the model's tokenizer.
      prompt (str): from :func:`instruction_prompt` (or ``build_prompt``).
    Returns:
      tuple[list[int], list[int]]: ``(input_ids, labels)`` of equal length.
    """
    ids = tokenize_prompt(tokenizer, prompt)
    labels = [IGNORE_INDEX] * len(ids)
    marker = SEP + ASSISTANT_ROLE + ":"
    start = prompt.find(marker)
    if start < 0:
        raise ValueError(f"conversation_labels: prompt has no {marker!r} turn: {prompt[:80]!r}...")
    while start >= 0:
        answer_start = start + len(marker)
        end = prompt.find(SEP2, answer_start)
        answer_end = len(prompt) if end < 0 else end + len(SEP2)
        first = _common_prefix(tokenize_prompt(tokenizer, prompt[:answer_start]), ids)
        last = _common_prefix(tokenize_prompt(tokenizer, prompt[:answer_end]), ids)
        if answer_end == len(prompt):
            last = len(ids)
        labels[first:last] = ids[first:last]
        start = prompt.find(marker, answer_end)
    labels = [IGNORE_INDEX if t == IMAGE_TOKEN_INDEX else t for t in labels]
    return ids, labels


def tokenize_conversations(tokenizer, prompts: Sequence[str]) -> Conversations:
    """Tokenize ready-made prompts with :func:`conversation_labels`, right-padded with the pad id.

    Arguments:
      tokenizer: the model's tokenizer.
      prompts (Sequence[str]): N full conversations.
    Returns:
      Conversations: ids ``[N,L]``, attention ``[N,L]``, labels ``[N,L]``.
    """
    if not prompts:
        raise ValueError("tokenize_conversations: give at least one prompt")
    rows = [conversation_labels(tokenizer, p) for p in prompts]
    length = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(rows), length), dtype=torch.bool)
    for i, (ids, row_labels) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(ids)] = torch.tensor(row_labels)
        attention[i, : len(ids)] = True
    return Conversations(input_ids, attention, labels, list(prompts))
