"""Golden token ids from transformers 4.31's slow ``LlamaTokenizer``, the tokenizer VISA ran with.

The test ``tests/test_llama_tokenizer.py`` compares ``visa_lib``'s own tokenizer against the ids
this script writes. It must run in a THROWAWAY environment holding the exact old version (neither
torch nor a GPU is needed; do not install these pins into the project's environment)::

    python3 -m venv /tmp/tf431
    /tmp/tf431/bin/pip install transformers==4.31.0 sentencepiece protobuf
    /tmp/tf431/bin/python scripts/make_tokenizer_goldens.py            # rewrites the goldens
    /tmp/tf431/bin/python scripts/make_tokenizer_goldens.py --train    # also retrains the fixture model

``--train`` trains the small sentencepiece fixture ``tests/fixtures/llama_sp/tokenizer.model`` with
LLaMA's trainer settings (BPE, byte fallback, digits split, whitespace kept as is, dummy prefix)
on the package's own prompt texts plus a few sentences written here. Every golden is produced the
way VISA produces ids: ``AutoTokenizer.from_pretrained(folder, use_fast=False)``, then
``add_tokens("[SEG]")``, then LLaVA's ``tokenizer_image_token`` (chunks around ``<image>``
tokenized one by one, ``-200`` between them) and LISA's label masking rule. The prompts come from
``visa_lib/model/prompts.py``, loaded by file path so that neither torch nor the package is imported.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "llama_sp"
GOLDENS = ROOT / "tests" / "fixtures" / "llama_sp_goldens.json"
#: Visual tokens per <image> in VISA (64 + 32 + 16); its inference code hard-codes 112 - 1 = 111.
TOKENS_PER_IMAGE = 112

#: Trainer settings of LLaMA's tokenizer.model (its trainer_spec), except the vocabulary size.
LLAMA_TRAINER = dict(
    model_type="bpe",
    vocab_size=700,
    byte_fallback=True,
    split_digits=True,
    allow_whitespace_only_pieces=True,
    remove_extra_whitespaces=False,
    normalization_rule_name="identity",
    add_dummy_prefix=True,
    split_by_unicode_script=True,
    split_by_number=True,
    split_by_whitespace=True,
    max_sentencepiece_length=16,
    character_coverage=0.99995,
    unk_id=0,
    bos_id=1,
    eos_id=2,
    pad_id=-1,
    num_threads=1,
    hard_vocab_limit=False,
)

EXTRA_SENTENCES = (
    "The red car overtakes the blue truck on the left side of the road.",
    "A man in a black jacket is walking his dog across the street.",
    "Which animal is most likely to catch the ball first?",
    "The cat jumps onto the table and knocks over a glass of water.",
    "Two children are playing football near the big tree in 2024.",
    "Sure, the segmentation result is shown in the image.",
    "It is the small green square moving to the right.",
    "What is the object that the person is holding in the video?",
    "Please find the bird that flies away and segment it.",
    "The horse running fastest, number 7, wins the race at 3:45 pm.",
)

#: Expressions: referring (short question list) and reasoning (ends with "?"), with capitals,
#: digits, apostrophes, extra spaces and non-ASCII text (byte fallback).
EXPRESSIONS = (
    "the red car",
    "the cat on the left",
    "which car is most likely to win the race?",
    "What could the person use to open the door?",
    "the 2nd player from the left, wearing number 23",
    "the dog's ball",
    "the  man   in blue",
    "the café's sign",
    "the object that moves first?",
)
FREE_ANSWERS = ("It is the red square.", "It is no object.", "3 cars are visible.", "Yes")


def load_prompts():
    """``visa_lib/model/prompts.py`` as a module, without importing the package."""
    spec = importlib.util.spec_from_file_location("visa_prompts", ROOT / "visa_lib" / "model" / "prompts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_fixture(prompts) -> None:
    """Train the small LLaMA-style sentencepiece model and write the base tokenizer folder."""
    import io

    import sentencepiece as spm
    from transformers import LlamaTokenizer

    lines = [prompts.SYSTEM_MESSAGE, *EXTRA_SENTENCES]
    for expression in EXPRESSIONS:
        for q in range(len(prompts.question_templates(expression))):
            lines.extend(prompts.build_question(expression, 2, q).split("\n"))
    lines.extend(prompts.ANSWER_LIST)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, **LLAMA_TRAINER)
    FIXTURE.mkdir(parents=True, exist_ok=True)
    (FIXTURE / "tokenizer.model").write_bytes(model.getvalue())
    # The base folder as Chat-UniVi ships it: the sentencepiece model and a slow-tokenizer config.
    base = LlamaTokenizer(str(FIXTURE / "tokenizer.model"), legacy=True)
    base.save_pretrained(str(FIXTURE))
    for leftover in ("added_tokens.json",):
        (FIXTURE / leftover).unlink(missing_ok=True)


def tokenizer_image_token(tokenizer, prompt: str, image_index: int = -200) -> list[int]:
    """LLaVA's ``tokenizer_image_token``, as VISA calls it (chunks around ``<image>``, BOS once)."""
    chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]
    ids, offset = [], 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        ids.append(chunks[0][0])
    separated = [x for chunk in chunks for x in (chunk, [image_index] * (offset + 1))][:-1]
    for piece in separated:
        ids.extend(piece[offset:])
    return ids


def lisa_labels(tokenizer, conversation: str, ids: list[int]) -> list[int]:
    """LISA's / VISA's label masking of one ``llava_v1`` conversation (``utils/dataset.py``)."""
    sep, sep2 = " ASSISTANT: ", "</s>"
    target = list(ids)
    cur = 1
    target[:cur] = [-100] * cur
    for rou in conversation.split(sep2):
        if rou == "":
            break
        parts = rou.split(sep)
        assert len(parts) == 2, rou
        parts[0] += sep
        round_len = len(tokenizer_image_token(tokenizer, rou))
        instruction_len = len(tokenizer_image_token(tokenizer, parts[0])) - 2
        target[cur : cur + instruction_len] = [-100] * instruction_len
        cur += round_len
    target[cur:] = [-100] * (len(target) - cur)
    assert cur == len(ids), (cur, len(ids), conversation[-60:])
    return target


def seg_read_position(ids: list[int], seg_id: int) -> int | None:
    """VISA's inference read-out: ``ids[1:] == seg``, a False appended, 111 Falses per image prepended."""
    mask = [t == seg_id for t in ids[1:]] + [False]
    images = sum(1 for t in ids if t == -200)
    mask = [False] * ((TOKENS_PER_IMAGE - 1) * images) + mask
    hits = [i for i, m in enumerate(mask) if m]
    return hits[0] if hits else None


def cases(prompts) -> list[dict]:
    """Every kind of string the package feeds the LLM."""
    out = []
    for n, expression in enumerate(EXPRESSIONS):
        normalized = prompts.normalize_expression(expression)
        for t in (1, 3, 11) if n < 2 else (1, 3):  # 11 references: VISA's evaluation maximum
            out.append(dict(name=f"eval T={t}: {normalized}", text=prompts.build_prompt(normalized, t)))
        out.append(
            dict(name=f"open turn: {normalized}", text=prompts.build_prompt(normalized, 2, with_answer=False))
        )
        out.append(dict(name=f"train: {expression}", text=prompts.build_prompt(expression, 8)))
    for expression in EXPRESSIONS[:3:2]:  # every question form x every answer, once per list
        for q in range(len(prompts.question_templates(expression))):
            for a in range(len(prompts.ANSWER_LIST)):
                text = prompts.build_prompt(expression, 2, question_index=q, answer_index=a)
                out.append(dict(name=f"train q={q} a={a}: {expression}", text=text))
    for answer in FREE_ANSWERS:
        text = prompts.build_conversation(prompts.build_question("the red car", 4), answer)
        out.append(dict(name=f"free answer: {answer}", text=text))
    for text in ("[SEG]", " [SEG] ", "It is [SEG].", "a[SEG]b", "45%", "  two  spaces ", "\n", "", "é ü 🙂"):
        out.append(dict(name=f"plain: {text!r}", text=text, plain=True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", action="store_true", help="retrain the fixture tokenizer.model too")
    args = parser.parse_args()
    import transformers
    from transformers import AutoTokenizer

    if transformers.__version__ != "4.31.0":
        raise SystemExit(f"needs transformers==4.31.0 (VISA's pin), found {transformers.__version__}")
    prompts = load_prompts()
    if args.train:
        train_fixture(prompts)
    goldens: dict = {"transformers": transformers.__version__, "tokens_per_image": TOKENS_PER_IMAGE}
    for legacy in (True, False):
        kwargs = {} if legacy else {"legacy": False}
        tok = AutoTokenizer.from_pretrained(str(FIXTURE), use_fast=False, model_max_length=2048, **kwargs)
        tok.pad_token = tok.unk_token
        tok.add_tokens("[SEG]")
        seg = tok("[SEG]", add_special_tokens=False).input_ids[0]
        rows = []
        for case in cases(prompts):
            text = case["text"]
            row = dict(name=case["name"], text=text)
            if case.get("plain"):
                row["ids"] = tok(text).input_ids
            else:
                ids = tokenizer_image_token(tok, text)
                row["ids"] = ids
                if text.endswith("</s>"):
                    labels = lisa_labels(tok, text, ids)
                    # Stored compactly: the labels are -100 up to `labels_from`, then the ids.
                    start = next(i for i, x in enumerate(labels) if x != -100)
                    assert labels == [-100] * start + ids[start:] and -200 not in ids[start:]
                    row["labels_from"] = start
                    row["seg_read_position"] = seg_read_position(ids, seg)
            if len(row["ids"]) < 120:  # readable pieces and decode checks for the shorter cases
                row["pieces"] = tok.convert_ids_to_tokens([i for i in row["ids"] if i >= 0])
                row["decoded"] = tok.decode([i for i in row["ids"] if i >= 0], skip_special_tokens=True)
            rows.append(row)
        key = "legacy" if legacy else "non_legacy"
        goldens[key] = dict(seg_token_id=seg, vocab_size=tok.vocab_size, len=len(tok), cases=rows)
    # One case per line keeps the file small and its diffs readable.
    text = json.dumps(goldens, ensure_ascii=False)
    text = text.replace('{"name"', '\n  {"name"').replace("]}", "]\n }")
    GOLDENS.write_text(text + "\n")
    print(f"wrote {GOLDENS.relative_to(ROOT)}: {len(goldens['legacy']['cases'])} cases x 2 modes")


if __name__ == "__main__":
    main()
