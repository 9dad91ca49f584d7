"""VISA's token ids: our sentencepiece tokenizer against goldens from transformers 4.31's slow tokenizer.

The fixture ``tests/fixtures/llama_sp`` is a small sentencepiece model trained with LLaMA's settings;
``tests/fixtures/llama_sp_goldens.json`` holds the ids transformers 4.31 gives for every kind of
string the package feeds the LLM (written by ``scripts/make_tokenizer_goldens.py``).
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from visa_lib.model.llama_tokenizer import LlamaSentencePieceTokenizer
from visa_lib.model.prompts import IGNORE_INDEX, IMAGE_TOKEN_INDEX, build_prompt
from visa_lib.model.tokenizer import build_labels, load_checkpoint_tokenizer, tokenize_prompt

FIXTURES = Path(__file__).parent / "fixtures"
LLAMA_SP = FIXTURES / "llama_sp"
GOLDENS = json.loads((FIXTURES / "llama_sp_goldens.json").read_text())


def _cases(mode: str) -> list[dict]:
    return GOLDENS[mode]["cases"]


@pytest.fixture(scope="module")
def tok():
    """The tokenizer as the package loads it from a Chat-UniVi-style folder (pad = unk, [SEG] added)."""
    return load_checkpoint_tokenizer(LLAMA_SP)


def test_fixture_loads_as_sentencepiece_with_seg_after_the_vocabulary(tok):
    assert isinstance(tok, LlamaSentencePieceTokenizer) and tok.legacy
    golden = GOLDENS["legacy"]
    assert tok.vocab_size == golden["vocab_size"] and len(tok) == golden["len"]
    assert tok.convert_tokens_to_ids("[SEG]") == golden["seg_token_id"] == tok.vocab_size
    assert tok.pad_token_id == tok.unk_token_id == 0 and tok.bos_token_id == 1 and tok.eos_token_id == 2


@pytest.mark.parametrize("case", _cases("legacy"), ids=lambda c: c["name"][:60])
def test_ids_match_transformers_4_31(tok, case):
    if "labels_from" in case or case["text"].count("<image>"):
        ids = tokenize_prompt(tok, case["text"])
    else:
        ids = tok(case["text"]).input_ids
    assert ids == case["ids"]
    if "pieces" in case:
        assert tok.convert_ids_to_tokens([i for i in ids if i >= 0]) == case["pieces"]
        assert tok.decode([i for i in ids if i >= 0], skip_special_tokens=True) == case["decoded"]


LABELLED = [c for c in _cases("legacy") if "labels_from" in c]


@pytest.mark.parametrize("case", LABELLED, ids=lambda c: c["name"][:60])
def test_training_labels_match_visa_masking(tok, case):
    ids, labels = build_labels(tok, case["text"])
    start = case["labels_from"]
    assert ids == case["ids"]
    assert labels == [IGNORE_INDEX] * start + case["ids"][start:]


def test_non_legacy_folders_follow_the_non_legacy_rule(tmp_path):
    folder = tmp_path / "tok"
    shutil.copytree(LLAMA_SP, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps(config | {"legacy": False}))
    tok = load_checkpoint_tokenizer(folder)
    assert not tok.legacy
    for case in _cases("non_legacy"):
        text = case["text"]
        ids = tokenize_prompt(tok, text) if "<image>" in text else tok(text).input_ids
        assert ids == case["ids"], case["name"]


def test_the_documented_differences_are_covered_by_the_goldens():
    """The two ways newer tokenizers differ (docs/tokenization.md) are visible in the goldens."""
    by_name = {c["name"]: c for c in _cases("legacy")}
    seg = by_name["plain: 'It is [SEG].'"]
    assert seg["pieces"] == ["<s>", "▁It", "▁is", "[SEG]", "▁", "."]  # no piece between ▁is and [SEG]
    open_turn = next(c for c in _cases("legacy") if c["name"].startswith("open turn"))
    assert open_turn["pieces"][-1] == ":" and "▁" not in open_turn["pieces"][-2:]
    target_chunk = LlamaSentencePieceTokenizer(LLAMA_SP / "tokenizer.model").tokenize(" \nTarget Image: ")
    # sentencepiece's dummy prefix, then the chunk's own space: two ▁ before the newline
    assert "".join(target_chunk).startswith("▁▁<0x0A>")


def test_seg_read_position_matches_visa(tok):
    """The model reads [SEG]'s state where VISA's inference code does (112 tokens per image)."""
    from test_visa_model import TINY, tiny_vision_tower
    from transformers import LlamaForCausalLM

    from visa_lib.model.sam import build_sam
    from visa_lib.model.visa import TokenMerger, VisaModel, build_seg_head

    config = TINY.replace(name="tiny-sp", tokenizer="checkpoint")
    llm = LlamaForCausalLM(config.llama_config(vocab_size=len(tok)))
    tower = tiny_vision_tower()
    sam = build_sam("toy", pretrained=False)
    model = VisaModel(
        llm,
        tower,
        TokenMerger((64, 32, 16), (5, 3, 3)),
        torch.nn.Linear(tower.hidden_size, config.llm.hidden_size),
        build_seg_head(config.llm.hidden_size, 64),
        sam,
        tok,
        tok.convert_tokens_to_ids("[SEG]"),
        config,
    )
    checked = 0
    for case in _cases("legacy"):
        if case.get("seg_read_position") is None:
            continue
        ids = torch.tensor([case["ids"]])
        images = int((ids == IMAGE_TOKEN_INDEX).sum())
        image_tokens = torch.zeros(images, GOLDENS["tokens_per_image"], tower.hidden_size)
        inputs = model.embed_multimodal(ids, image_tokens)
        rows, positions = model.seg_read_positions(inputs.expanded_ids)
        assert positions.tolist() == [case["seg_read_position"]], case["name"]
        checked += 1
    assert checked > 20


def test_model_tokenize_gives_the_golden_training_conversation(tok):
    """``VisaModel.tokenize`` (the path training and evaluation use) yields the golden ids and labels."""
    case = next(c for c in _cases("legacy") if c["name"] == "eval T=3: the red car")
    assert case["text"] == build_prompt("the red car", 3)
    ids, labels = build_labels(tok, case["text"])
    assert ids == case["ids"] and labels[case["labels_from"] - 1] == IGNORE_INDEX
    assert labels[case["labels_from"] :] == ids[case["labels_from"] :]


def test_save_pretrained_writes_what_4_31_reads(tmp_path, tok):
    """Our saved folder has 4.31's files; [SEG] lands in added_tokens.json with the same id."""
    tok.save_pretrained(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    expected = ["added_tokens.json", "special_tokens_map.json", "tokenizer.model", "tokenizer_config.json"]
    assert names == expected
    assert json.loads((tmp_path / "added_tokens.json").read_text()) == {"[SEG]": tok.vocab_size}
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "LlamaTokenizer" and config["legacy"] is True
    again = load_checkpoint_tokenizer(tmp_path)
    assert len(again) == len(tok)
    for case in _cases("legacy")[:5]:
        assert tokenize_prompt(again, case["text"]) == case["ids"]


def test_folder_without_tokenizer_model_is_refused_with_what_to_do(tmp_path):
    shutil.copytree(LLAMA_SP, tmp_path / "tok")
    (tmp_path / "tok" / "tokenizer.model").unlink()
    with pytest.raises(FileNotFoundError, match="copy tokenizer.model from the Chat-UniVi folder"):
        load_checkpoint_tokenizer(tmp_path / "tok")
