"""Tokenizers for both rungs, the ``[SEG]`` token, and prompt tokenization with image slots.

Toy rung: ``build_toy_tokenizer()`` makes a deterministic word-level tokenizer (no file to
download) whose vocabulary covers the special tokens, every word of the VISA and TFS prompts,
percentages ("45%" -> "4", "5", "%"), and the words of the synthetic ReasonVOS-lite queries.
Full rung: ``load_checkpoint_tokenizer(dir)`` reads the tokenizer saved with the checkpoint; a
LLaMA ``tokenizer.model`` is read by :class:`~visa_lib.model.llama_tokenizer.LlamaSentencePieceTokenizer`,
which gives the ids VISA's transformers-4.31 tokenizer gave (``docs/tokenization.md``).

Both then go through the same code: ``add_seg_token`` (``[SEG]`` is a normal *added* token, as
in VISA), ``tokenize_prompt`` (each ``<image>`` becomes ``IMAGE_TOKEN_INDEX``, chunks tokenized
separately like LLaVA's ``tokenizer_image_token``) and ``build_labels`` (loss only on the answer).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from visa_lib.model.llama_tokenizer import TOKENIZER_MODEL, LlamaSentencePieceTokenizer
from visa_lib.model.prompts import (
    ASSISTANT_ROLE,
    IGNORE_INDEX,
    IMAGE_TOKEN,
    IMAGE_TOKEN_INDEX,
    SEG_TOKEN,
    SEP,
    SEP2,
    prompt_words,
)

BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"
#: Special tokens of the toy tokenizer, in id order (ids 0..4); ``[SEG]`` comes after the words.
SPECIAL_TOKENS: tuple[str, ...] = (BOS, EOS, UNK, PAD, IMAGE_TOKEN)
#: Matches VISA's ``model_max_length``.
MODEL_MAX_LENGTH = 2048
#: Either tokenizer of the package: the toy word-level one or LLaMA's sentencepiece one.
AnyTokenizer = PreTrainedTokenizerFast | LlamaSentencePieceTokenizer

# Questions other parts of the pipeline ask the toy LLM (the TFS frame sampler): the paper's short form
# and LLaMA-VID's client question and movie wrapper (docs/pipeline.md).
_EXTRA_TEXTS: tuple[str, ...] = (
    "To find {query}, which percentage mark of the video should I check?",
    "If I want to find '{query}', which percentage mark of the video should I check? "
    "Please choose one answer from 0%, 10%, 20%, 30%, 40%, 50%, 60%, 70%, 80%, 90%, and 100%.",
    "Below is a movie. Memorize the content and answer my question after watching this movie.",
    "Now the movie end. last first frame frames percent mark of yes no",
)
_DIGITS_AND_MARKS: tuple[str, ...] = tuple("0123456789") + ("%", "(", ")", "-", "'", '"', "!", ";", "/")

def _dataset_words() -> list[str]:
    """Every word a ReasonVOS-lite query can contain (the dataset's bounded vocabulary)."""
    from visa_lib.data.reasonvos_lite.expressions import vocabulary

    return [str(w) for w in vocabulary()]


def _split_words(texts: Iterable[str]) -> set[str]:
    """Lower-case pieces of ``texts`` as the toy pre-tokenizer cuts them."""
    pre = _pre_tokenizer()
    pieces: set[str] = set()
    for text in texts:
        text = text.replace("{query}", " ").lower()
        pieces.update(piece for piece, _ in pre.pre_tokenize_str(text))
    return pieces


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Split on whitespace, isolate every punctuation mark, and split numbers into single digits."""
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )


def toy_vocabulary(extra_words: Iterable[str] = ()) -> list[str]:
    """The ordered toy vocabulary: special tokens, then sorted words (``[SEG]`` is added afterwards).

    Arguments:
      extra_words (Iterable[str]): more words to cover (lower-cased and split like any text).
    Returns:
      list[str]: token strings; a token's id is its index.
    """
    words = set(prompt_words()) | set(_DIGITS_AND_MARKS)
    words |= _split_words([*_EXTRA_TEXTS, *_dataset_words(), *extra_words])
    words -= set(SPECIAL_TOKENS) | {SEG_TOKEN.lower(), ""}
    return [*SPECIAL_TOKENS, *sorted(words)]


def build_toy_tokenizer(
    vocab: Sequence[str] | None = None, extra_words: Iterable[str] = (), with_seg: bool = True
) -> PreTrainedTokenizerFast:
    """A deterministic word-level tokenizer for the toy rung, with ``[SEG]`` already added.

    Text is NFKC-normalised and lower-cased, split on whitespace and punctuation, numbers into
    single digits; a BOS ``<s>`` is prepended (like LLaMA); unknown words map to ``<unk>``.

    Arguments:
      vocab (Sequence[str] | None): a saved vocabulary (``tokenizer_vocabulary(tok)``) to rebuild
        exactly the tokenizer some weights were trained with; None builds it from code.
      extra_words (Iterable[str]): more words to cover; ignored when ``vocab`` is given.
      with_seg (bool): add ``[SEG]`` (False gives a "base LLM" tokenizer, as Chat-UniVi ships).
    Returns:
      PreTrainedTokenizerFast: padding on the right with ``<pad>``; ``len(tok)`` includes ``[SEG]``.
    """
    tokens = list(vocab) if vocab is not None else toy_vocabulary(extra_words)
    if SEG_TOKEN in tokens:  # a saved vocabulary lists [SEG] last; it is re-added below as an added token
        if tokens[-1] != SEG_TOKEN:
            raise ValueError(
                f"vocab: {SEG_TOKEN!r} must be the last entry (found at {tokens.index(SEG_TOKEN)})"
            )
        tokens = tokens[:-1]
    missing = [t for t in SPECIAL_TOKENS if t not in tokens]
    if missing:
        raise ValueError(f"vocab lacks the special tokens {missing}; pass the list saved with the weights")
    if len(set(tokens)) != len(tokens):
        raise ValueError("vocab has duplicate entries; pass the list saved with the weights unchanged")
    core = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(tokens)}, unk_token=UNK))
    core.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    core.pre_tokenizer = _pre_tokenizer()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tokens.index(BOS))]
    )
    core.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        padding_side="right",
        model_max_length=MODEL_MAX_LENGTH,
    )
    if with_seg:
        add_seg_token(tokenizer)
    return tokenizer


def tokenizer_vocabulary(tokenizer: PreTrainedTokenizerFast) -> list[str]:
    """The tokens ordered by id (saved with toy weights; rebuilt by ``build_toy_tokenizer(vocab)``)."""
    vocab = tokenizer.get_vocab()
    ordered = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in ordered] != list(range(len(ordered))):
        raise ValueError("tokenizer ids are not contiguous from 0; cannot save it as an ordered list")
    return [t for t, _ in ordered]


def add_seg_token(tokenizer: AnyTokenizer) -> int:
    """Add ``[SEG]`` as a normal added token (as VISA does) if missing and return its id.

    Arguments:
      tokenizer (AnyTokenizer): the toy tokenizer or LLaMA's sentencepiece tokenizer.
    Returns:
      int: the id of ``[SEG]``; the caller resizes the LLM embeddings to ``len(tokenizer)``.
    """
    if isinstance(tokenizer, LlamaSentencePieceTokenizer):
        tokenizer.add_tokens(SEG_TOKEN)  # VISA: tokenizer.add_tokens("[SEG]")
    elif SEG_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(SEG_TOKEN, normalized=False, special=False)])
    ids = tokenizer(SEG_TOKEN, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise RuntimeError(
            f"{SEG_TOKEN} tokenizes to {ids}, expected a single id; the tokenizer splits added tokens"
        )
    return int(ids[0])


def load_checkpoint_tokenizer(path: str | Path) -> AnyTokenizer:
    """Load the tokenizer saved in a checkpoint directory (full rung; local files only) and add ``[SEG]``.

    A folder with LLaMA's ``tokenizer.model`` (Chat-UniVi, merged VISA) gets
    :class:`LlamaSentencePieceTokenizer`, VISA's exact ids under any transformers version. A folder
    without it is read with ``AutoTokenizer`` (our exported toy models carry the toy tokenizer's
    ``tokenizer.json``); a LLaMA folder that lost its ``tokenizer.model`` is refused.

    Arguments:
      path (str | Path): a Chat-UniVi or merged VISA checkpoint directory holding tokenizer files.
    Returns:
      the tokenizer, right padding, ``pad = unk`` (as VISA sets it), ``[SEG]`` added.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path}: not a checkpoint directory; download Chat-UniVi/Chat-UniVi and pass its folder"
        )
    if (path / TOKENIZER_MODEL).is_file():
        tokenizer = LlamaSentencePieceTokenizer.from_pretrained(
            path, padding_side="right", model_max_length=MODEL_MAX_LENGTH
        )
        tokenizer.pad_token = tokenizer.unk_token  # VISA: tokenizer.pad_token = tokenizer.unk_token
        add_seg_token(tokenizer)
        return tokenizer
    config = path / "tokenizer_config.json"
    if config.is_file() and "Llama" in str(json.loads(config.read_text()).get("tokenizer_class", "")):
        raise FileNotFoundError(
            f"{path}: a LLaMA tokenizer without tokenizer.model. VISA's token ids come from the "
            "sentencepiece model: copy tokenizer.model from the Chat-UniVi folder into this folder"
        )
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"{path}: no tokenizer.model (LLaMA sentencepiece) or tokenizer.json; copy the tokenizer "
            "files from the Chat-UniVi folder into this folder"
        )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        str(path), local_files_only=True, padding_side="right", model_max_length=MODEL_MAX_LENGTH
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token
    add_seg_token(tokenizer)
    return tokenizer


def tokenize_prompt(tokenizer: AnyTokenizer, prompt: str) -> list[int]:
    """Token ids of ``prompt`` with ``IMAGE_TOKEN_INDEX`` (-200) at every ``<image>``.

    Like LLaVA's ``tokenizer_image_token``: the prompt is split on ``<image>``, each chunk is
    tokenized on its own, and only the first chunk keeps the BOS token.

    Arguments:
      tokenizer (AnyTokenizer): the model's tokenizer.
      prompt (str): text with ``<image>`` placeholders (``build_prompt``).
    Returns:
      list[int]: ids, one -200 per image slot.
    """
    ids: list[int] = []
    bos = tokenizer.bos_token_id
    for i, chunk in enumerate(prompt.split(IMAGE_TOKEN)):
        if i > 0:
            ids.append(IMAGE_TOKEN_INDEX)
        chunk_ids = list(tokenizer(chunk).input_ids)
        if i > 0 and chunk_ids and chunk_ids[0] == bos:
            chunk_ids = chunk_ids[1:]
        ids.extend(chunk_ids)
    unk = tokenizer.unk_token_id
    if unk is not None and unk in ids and tokenizer.unk_token != tokenizer.pad_token:
        warnings.warn(
            f"prompt has words outside the tokenizer's vocabulary (now {tokenizer.unk_token}): {prompt!r}",
            stacklevel=2,
        )
    return ids


def build_labels(tokenizer: AnyTokenizer, prompt: str) -> tuple[list[int], list[int]]:
    """Input ids and CE labels for one conversation: the loss falls on the answer and ``</s>`` only.

    VISA's rule (LISA's ``collate_fn``): after ``<s>``, ``len(ids(instruction)) - 2`` tokens are
    masked, where the instruction is the prompt up to and including ``"ASSISTANT: "``. The ``- 2``
    removes ``<s>`` and the lone ``▁`` that sentencepiece makes of the instruction's trailing space
    (in the full prompt that space belongs to the answer's first piece). The toy tokenizer makes no
    piece of a trailing space, so there only ``<s>`` is removed. Image slots lie in the masked part.

    Arguments:
      tokenizer (AnyTokenizer): the model's tokenizer.
      prompt (str): a ``build_prompt(..., with_answer=True)`` string (or ``build_conversation``).
    Returns:
      tuple[list[int], list[int]]: ``(input_ids, labels)`` of equal length.
    """
    marker = SEP + ASSISTANT_ROLE + ": "
    cut = prompt.rfind(marker)
    if cut < 0 or not prompt.endswith(SEP2):
        raise ValueError(
            f"prompt has no {marker!r} turn ending in {SEP2!r}; build it with "
            "visa_lib.model.prompts.build_prompt(..., with_answer=True)"
        )
    ids = tokenize_prompt(tokenizer, prompt)
    instruction = tokenize_prompt(tokenizer, prompt[: cut + len(marker)])
    trailing_space = int(len(instruction) > 1 and _is_space_piece(tokenizer, instruction[-1]))
    n = len(instruction) - trailing_space  # <s> and the instruction's own tokens
    if ids[:n] != instruction[:n]:
        raise ValueError(f"the instruction's tokens are not a prefix of the prompt's: {prompt!r}")
    labels = [IGNORE_INDEX] * n + ids[n:]
    if all(t == IGNORE_INDEX for t in labels) or IMAGE_TOKEN_INDEX in labels:
        raise ValueError("prompt has no answer tokens to learn from; build it with with_answer=True")
    return ids, labels


def _is_space_piece(tokenizer: AnyTokenizer, token_id: int) -> bool:
    """Whether ``token_id`` is sentencepiece's lone word-boundary piece ``▁``."""
    if not isinstance(tokenizer, LlamaSentencePieceTokenizer):
        return False
    return tokenizer.convert_ids_to_tokens(int(token_id)) == "\u2581"
