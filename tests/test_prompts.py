"""The VISA conversation strings (docs/prompt.md), checked character by character."""

import pytest

from visa_lib.model import prompts
from visa_lib.model.prompts import build_prompt, count_image_slots

SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the human's questions."
)


def test_referring_prompt_is_exact_for_three_references():
    expected = (
        SYSTEM + " USER: Reference Video: (0)<image>, (1)<image>, (2)<image> \nTarget Image: <image> \n"
        "What is the red car in the Reference Video? Please respond with segmentation mask in the "
        "Target Image. ASSISTANT: It is [SEG].</s>"
    )
    assert build_prompt("the red car", 3) == expected


def test_reasoning_prompt_uses_long_list_and_keeps_question_mark():
    text = build_prompt("Which car will win the race?", 1)
    assert text == (
        SYSTEM + " USER: Reference Video: (0)<image> \nTarget Image: <image> \n"
        "Which car will win the race? Please find it in the Reference Video and respond with "
        "segmentation mask in the Target Image. ASSISTANT: It is [SEG].</s>"
    )


def test_open_prompt_for_generation_ends_at_assistant_turn():
    text = build_prompt("the dog", 2, with_answer=False)
    assert text.endswith("Target Image. ASSISTANT:")
    assert "[SEG]" not in text and "</s>" not in text


@pytest.mark.parametrize("num_refs", [1, 4, 12])
def test_image_slots_are_references_plus_target(num_refs):
    text = build_prompt("the dog", num_refs)
    assert count_image_slots(text) == num_refs + 1
    assert f"({num_refs - 1})<image> \nTarget Image: <image>" in text
    assert "<video>" not in text


def test_other_templates_and_answers_are_selectable():
    assert "Please find the cat in the Reference Video and segment it" in build_prompt(
        "the cat", 1, question_index=2
    )
    assert build_prompt("the cat", 1, answer_index=3).endswith("Sure, the segmentation result is [SEG].</s>")
    assert "output segmentation mask" in build_prompt("why?", 1, question_index=1)
    with pytest.raises(ValueError, match="question_index"):
        build_prompt("why?", 1, question_index=2)  # the long list has two templates


def test_each_answer_holds_exactly_one_seg_token():
    assert all(a.count("[SEG]") == 1 for a in prompts.ANSWER_LIST)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        build_prompt("   ", 2)
    with pytest.raises(ValueError, match="num_references"):
        build_prompt("the cat", 0)


def test_expression_is_stripped_and_normalisation_is_separate():
    assert build_prompt("  the cat ", 1) == build_prompt("the cat", 1)
    assert prompts.normalize_expression("  The  Red\tCar ") == "the red car"


def test_prompt_words_cover_templates():
    words = prompts.prompt_words()
    for w in ["reference", "segmentation", "assistant", "human", "'", "?"]:
        assert w in words
    assert "[seg]" not in words and "image" in words
