"""The conversation VISA trains and evaluates on: templates, placeholders and ``build_prompt``.

Every prompt string of the VISA stage lives here, in one place (docs/prompt.md).
The conversation uses LLaVA's ``llava_v1`` template::

    {SYSTEM} USER: {question} ASSISTANT: {answer}</s>

where the question comes from one of two lists, chosen by whether the expression ends with a
question mark (a *reasoning* query such as "which car will win?") or not (a *referring* phrase
such as "the red car"). The question holds one ``<video>`` slot, expanded to ``T`` numbered
reference-frame ``<image>`` slots, and one ``Target Image: <image>`` slot whose frame SAM decodes.
Each ``<image>`` later becomes the frame's merged visual tokens (112 on the full rung).
"""

from __future__ import annotations

import re

#: Placeholder of one frame in a prompt; replaced by the frame's merged visual tokens.
IMAGE_TOKEN = "<image>"
#: Placeholder of the reference video in the question templates; expanded by ``expand_video_slot``.
VIDEO_TOKEN = "<video>"
#: The token whose preceding hidden state becomes the SAM prompt.
SEG_TOKEN = "[SEG]"
#: Id inserted for each ``<image>`` by ``visa_lib.model.tokenizer.tokenize_prompt`` (LLaVA convention).
IMAGE_TOKEN_INDEX = -200
#: Label of positions that carry no loss (instruction, images, padding).
IGNORE_INDEX = -100

#: ``llava_v1`` system message (VISA uses LLaVA's wording, not Chat-UniVi's "curious user").
SYSTEM_MESSAGE = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
USER_ROLE = "USER"
ASSISTANT_ROLE = "ASSISTANT"
#: ``llava_v1`` separators: after the system message / user turn, and after the assistant turn.
SEP = " "
SEP2 = "</s>"

_SLOTS = "Reference Video: " + VIDEO_TOKEN + " \nTarget Image: " + IMAGE_TOKEN + " \n"

#: Questions for referring expressions (the expression does not end with "?").
SHORT_QUESTION_LIST: tuple[str, ...] = (
    _SLOTS + "What is {sent} in the Reference Video? "
    "Please respond with segmentation mask in the Target Image.",
    _SLOTS + "What is {sent} in the Reference Video? Please output segmentation mask in the Target Image.",
    _SLOTS + "Please find {sent} in the Reference Video and segment it in the Target Image.",
)

#: Questions for reasoning expressions (the expression ends with "?").
LONG_QUESTION_LIST: tuple[str, ...] = (
    _SLOTS + "{sent} Please find it in the Reference Video and respond with segmentation mask in the "
    "Target Image.",
    _SLOTS + "{sent} Please find it in the Reference Video and output segmentation mask in the Target Image.",
)

#: Answers; evaluation always teacher-forces the first one.
ANSWER_LIST: tuple[str, ...] = (
    "It is " + SEG_TOKEN + ".",
    "Sure, " + SEG_TOKEN + ".",
    "Sure, it is " + SEG_TOKEN + ".",
    "Sure, the segmentation result is " + SEG_TOKEN + ".",
)


def is_reasoning_expression(expression: str) -> bool:
    """Whether ``expression`` (str) selects the long (reasoning) question list: it ends with "?"."""
    return expression.strip().endswith("?")


def normalize_expression(expression: str) -> str:
    """Evaluation-time normalisation of an expression: lower case, whitespace collapsed.

    Arguments:
      expression (str): the raw query text.
    Returns:
      str: the normalised text (training only strips; evaluation does this).
    """
    return " ".join(expression.lower().split())


def expand_video_slot(question: str, num_references: int) -> str:
    """Replace the ``<video>`` slot by ``"(0)<image>, (1)<image>, ..., (T-1)<image>"``.

    Arguments:
      question (str): a question template holding exactly one ``<video>``.
      num_references (int): T >= 1, the number of reference frames.
    Returns:
      str: the question with T numbered ``<image>`` slots.
    """
    if num_references < 1:
        raise ValueError(
            f"num_references must be >= 1 (got {num_references}); VISA always shows reference frames"
        )
    if question.count(VIDEO_TOKEN) != 1:
        raise ValueError(f"question must hold exactly one {VIDEO_TOKEN!r} slot: {question!r}")
    frames = ", ".join(f"({i}){IMAGE_TOKEN}" for i in range(num_references))
    return question.replace(VIDEO_TOKEN, frames)


def question_templates(expression: str) -> tuple[str, ...]:
    """The question list VISA draws from for ``expression`` (str): long if it ends with "?", else short."""
    return LONG_QUESTION_LIST if is_reasoning_expression(expression) else SHORT_QUESTION_LIST


def build_question(expression: str, num_references: int, question_index: int = 0) -> str:
    """The user turn: the chosen question with the expression filled in and the slots expanded.

    Arguments:
      expression (str): the query; surrounding whitespace is stripped, nothing else changes.
      num_references (int): number of reference-frame ``<image>`` slots.
      question_index (int): which template of the list (evaluation uses 0; training draws one).
    Returns:
      str: the question text with ``num_references + 1`` ``<image>`` slots.
    """
    sent = expression.strip()
    if not sent:
        raise ValueError("expression is empty: give the text query that names the object to segment")
    templates = question_templates(sent)
    if not 0 <= question_index < len(templates):
        raise ValueError(
            f"question_index {question_index} out of range: this list has {len(templates)} templates"
        )
    return expand_video_slot(templates[question_index].format(sent=sent), num_references)


def build_conversation(question: str, answer: str | None) -> str:
    """Wrap one question (and optionally its answer) in the ``llava_v1`` template.

    Arguments:
      question (str): the user turn.
      answer (str | None): the assistant turn; None leaves the turn open ("... ASSISTANT:").
    Returns:
      str: ``"{SYSTEM} USER: {question} ASSISTANT: {answer}</s>"`` or the open form.
    """
    text = SYSTEM_MESSAGE + SEP + USER_ROLE + ": " + question + SEP + ASSISTANT_ROLE + ":"
    if answer is None:
        return text
    return text + " " + answer + SEP2


def build_prompt(
    expression: str,
    num_references: int,
    with_answer: bool = True,
    question_index: int = 0,
    answer_index: int = 0,
) -> str:
    """The exact conversation VISA trains and evaluates on (docs/prompt.md).

    Arguments:
      expression (str): the text query ("the red car", "which car will win?").
      num_references (int): T, the number of reference frames; the target frame adds one more slot.
      with_answer (bool): append the teacher-forced answer and ``</s>`` (evaluation and training do);
        False leaves the assistant turn open for free generation.
      question_index (int): template index in the chosen list (0 at evaluation).
      answer_index (int): index into ``ANSWER_LIST`` (0, "It is [SEG].", at evaluation).
    Returns:
      str: the prompt with ``num_references + 1`` ``<image>`` placeholders (the last is the target).
    """
    if not 0 <= answer_index < len(ANSWER_LIST):
        raise ValueError(
            f"answer_index {answer_index} out of range: ANSWER_LIST has {len(ANSWER_LIST)} answers"
        )
    question = build_question(expression, num_references, question_index)
    return build_conversation(question, ANSWER_LIST[answer_index] if with_answer else None)


def count_image_slots(prompt: str) -> int:
    """Number of ``<image>`` placeholders in ``prompt`` (str)."""
    return prompt.count(IMAGE_TOKEN)


def prompt_words() -> list[str]:
    """Every word and punctuation mark used by the templates (for building a word-level vocabulary).

    Returns:
      list[str]: sorted unique lower-case pieces, without the placeholders and ``[SEG]``.
    """
    texts = [
        SYSTEM_MESSAGE,
        USER_ROLE,
        ASSISTANT_ROLE,
        *SHORT_QUESTION_LIST,
        *LONG_QUESTION_LIST,
        *ANSWER_LIST,
    ]
    pieces: set[str] = set()
    for text in texts:
        for marker in (IMAGE_TOKEN, VIDEO_TOKEN, SEG_TOKEN, "{sent}"):
            text = text.replace(marker, " ")
        pieces.update(re.findall(r"\w+|[^\w\s]", text.lower()))
    return sorted(pieces)
