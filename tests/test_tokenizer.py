"""The toy word-level tokenizer, [SEG], image slots and label masking."""

import pytest

from visa_lib.model.prompts import IGNORE_INDEX, IMAGE_TOKEN_INDEX, build_prompt
from visa_lib.model.tokenizer import (
    SPECIAL_TOKENS,
    add_seg_token,
    build_labels,
    build_toy_tokenizer,
    tokenize_prompt,
    tokenizer_vocabulary,
)


@pytest.fixture(scope="module")
def tok():
    return build_toy_tokenizer()


def test_special_tokens_have_fixed_ids_and_seg_is_last(tok):
    vocab = tok.get_vocab()
    assert [vocab[t] for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert add_seg_token(tok) == len(tok) - 1
    assert tok.pad_token_id == 3 and tok.bos_token_id == 0 and tok.padding_side == "right"


def test_build_is_deterministic_and_vocab_round_trips(tok):
    again = build_toy_tokenizer()
    assert tokenizer_vocabulary(again) == tokenizer_vocabulary(tok)
    rebuilt = build_toy_tokenizer(tokenizer_vocabulary(tok))
    text = "It is [SEG]. 45%"
    assert rebuilt(text).input_ids == tok(text).input_ids


def test_prompts_and_tfs_question_have_no_unknown_words(tok):
    for expr in ["the red circle", "which shape moves fastest?"]:
        ids = tokenize_prompt(tok, build_prompt(expr, 3))
        assert tok.unk_token_id not in ids
    tfs = tok("To find the red circle, which percentage mark of the video should I check?").input_ids
    assert tok.unk_token_id not in tfs


def test_percentages_split_into_digits(tok):
    pieces = tok.convert_ids_to_tokens(tok("45% 100%", add_special_tokens=False).input_ids)
    assert pieces == ["4", "5", "%", "1", "0", "0", "%"]


def test_seg_token_is_one_id_and_case_is_folded(tok):
    seg = add_seg_token(tok)
    ids = tok("It is [SEG].", add_special_tokens=False).input_ids
    assert ids == tok("it IS [SEG] .", add_special_tokens=False).input_ids
    assert ids.count(seg) == 1 and ids[-1] == tok.convert_tokens_to_ids(".")


def test_image_slots_become_minus_200_and_only_first_chunk_has_bos(tok):
    ids = tokenize_prompt(tok, build_prompt("the red circle", 4))
    assert ids.count(IMAGE_TOKEN_INDEX) == 5
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1


def test_labels_cover_answer_only(tok):
    ids, labels = build_labels(tok, build_prompt("the red circle", 2))
    kept = [t for t in labels if t != IGNORE_INDEX]
    assert tok.convert_ids_to_tokens(kept) == ["it", "is", "[SEG]", ".", "</s>"]
    assert len(ids) == len(labels)
    assert all(lab == IGNORE_INDEX for i, lab in zip(ids, labels, strict=True) if i == IMAGE_TOKEN_INDEX)


def test_labels_need_an_answer(tok):
    with pytest.raises(ValueError, match="with_answer"):
        build_labels(tok, build_prompt("the red circle", 2, with_answer=False))


def test_unknown_words_warn(tok):
    with pytest.warns(UserWarning, match="outside the tokenizer"):
        tokenize_prompt(tok, build_prompt("the zorblax", 1))


def test_bad_saved_vocab_is_rejected(tok):
    vocab = tokenizer_vocabulary(tok)
    with pytest.raises(ValueError, match="special tokens"):
        build_toy_tokenizer(vocab[1:])
    with pytest.raises(ValueError, match="duplicate"):
        build_toy_tokenizer([*vocab[:-1], vocab[10]])
