"""LLaMA's sentencepiece tokenizer exactly as VISA ran it (transformers 4.31, slow, ``legacy``).

VISA (and Chat-UniVi) tokenize with ``LlamaTokenizer`` from transformers 4.31, ``use_fast=False``,
and add ``[SEG]`` with ``tokenizer.add_tokens("[SEG]")``. Newer transformers versions give other
ids for the same strings (see ``docs/tokenization.md``), and a different id before ``[SEG]`` moves
the hidden state VISA reads for the mask. This module re-implements that tokenizer on top of the
``sentencepiece`` package, so the ids do not depend on the installed transformers:

1. The text is cut at every *no-split* token (the special tokens ``<s> </s> <unk>`` and the added
   tokens such as ``[SEG]``), leftmost and longest match first.
2. Around an added token that is not special, the neighbouring pieces of text lose their
   whitespace on that side (``"It is [SEG]."`` -> ``"It is"``, ``[SEG]``, ``"."``). Special tokens
   keep it (they were created with ``lstrip=rstrip=False``).
3. Each remaining piece of text is encoded by sentencepiece on its own, so every piece gets
   sentencepiece's dummy ``▁`` prefix (``"."`` -> ``▁ .``; ``" \\nTarget"`` -> ``▁ ▁ <0x0A> ...``).
4. ``<s>`` is prepended (``add_bos_token``); ``</s>`` is not appended (``add_eos_token`` False).

``legacy=False`` (a folder whose ``tokenizer_config.json`` says so) follows 4.31's non-legacy rule
instead: one ``▁`` is put in front of the whole text and pieces after a special token get no dummy
prefix. The folder layout read and written is the one transformers 4.31 ``save_pretrained`` uses.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

#: sentencepiece's word-boundary mark.
SPIECE_UNDERLINE = "▁"
#: The file holding the sentencepiece model in a checkpoint folder.
TOKENIZER_MODEL = "tokenizer.model"


def _special_token_text(value: object) -> str | None:
    """``"<s>"`` from either a plain string or a saved ``AddedToken`` dict (``{"content": "<s>", ...}``)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and "content" in value:
        return str(value["content"])
    raise ValueError(f"tokenizer_config.json: cannot read the special token {value!r}")


def _added_token_entry(token: str) -> dict:
    """How transformers 4.31 writes a special token into ``tokenizer_config.json``."""
    return {
        "__type": "AddedToken",
        "content": token,
        "lstrip": False,
        "normalized": True,
        "rstrip": False,
        "single_word": False,
    }


class Encoding(dict):
    """``tokenizer(text)``'s result: ``.input_ids`` and ``.attention_mask`` (lists of int)."""

    @property
    def input_ids(self) -> list[int]:
        return self["input_ids"]

    @property
    def attention_mask(self) -> list[int]:
        return self["attention_mask"]


class LlamaSentencePieceTokenizer:
    """The slow transformers-4.31 ``LlamaTokenizer`` (plus ``add_tokens``), from ``sentencepiece`` alone.

    Arguments:
      model_file (str | Path): the sentencepiece ``tokenizer.model``.
      added_tokens (Sequence[str]): tokens added after the sentencepiece vocabulary, in id order
        (``[SEG]`` of a merged VISA folder); ids continue at ``vocab_size``.
      legacy (bool): 4.31's ``legacy`` switch (True unless the folder's config says otherwise).
      add_bos_token (bool), add_eos_token (bool): put ``<s>`` before / ``</s>`` after encoded text.
      bos_token, eos_token, unk_token (str), pad_token (str | None): the special tokens
        (VISA sets ``pad = unk``; ``load_checkpoint_tokenizer`` does that).
      model_max_length (int): kept for the saved config (VISA uses 2048).
      padding_side (str): "right", as VISA pads.
    """

    def __init__(
        self,
        model_file: str | Path,
        added_tokens: Sequence[str] = (),
        *,
        legacy: bool = True,
        add_bos_token: bool = True,
        add_eos_token: bool = False,
        bos_token: str = "<s>",
        eos_token: str = "</s>",
        unk_token: str = "<unk>",
        pad_token: str | None = None,
        model_max_length: int = 2048,
        padding_side: str = "right",
    ) -> None:
        import sentencepiece as spm

        self.model_file = Path(model_file)
        if not self.model_file.is_file():
            raise FileNotFoundError(
                f"{self.model_file}: sentencepiece model not found; copy tokenizer.model from the "
                "Chat-UniVi folder you downloaded"
            )
        self.sp_model = spm.SentencePieceProcessor()
        self.sp_model.Load(str(self.model_file))
        self.legacy = bool(legacy)
        self.add_bos_token = bool(add_bos_token)
        self.add_eos_token = bool(add_eos_token)
        self.bos_token, self.eos_token, self.unk_token = bos_token, eos_token, unk_token
        self.pad_token = pad_token
        self.model_max_length = int(model_max_length)
        self.padding_side = padding_side
        self.added_tokens_encoder: dict[str, int] = {}
        self.add_tokens(list(added_tokens))

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, folder: str | Path, **overrides: object) -> LlamaSentencePieceTokenizer:
        """Read a folder written by transformers' ``save_pretrained`` (``tokenizer.model`` is required).

        ``tokenizer_config.json``, ``special_tokens_map.json`` and ``added_tokens.json`` are read when
        present; ``overrides`` replace constructor arguments (e.g. ``model_max_length=2048``).
        """
        folder = Path(folder)
        model = folder / TOKENIZER_MODEL
        if not model.is_file():
            raise FileNotFoundError(
                f"{folder}: no {TOKENIZER_MODEL}. VISA's token ids come from LLaMA's sentencepiece model; "
                "copy tokenizer.model from the Chat-UniVi folder into this folder"
            )
        config: dict = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            file = folder / name
            if file.is_file():
                config.update(json.loads(file.read_text()))
        kwargs: dict = {}
        for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
            if config.get(key) is not None:
                kwargs[key] = _special_token_text(config[key])
        for key in ("add_bos_token", "add_eos_token", "model_max_length", "padding_side"):
            if key in config:
                kwargs[key] = config[key]
        if config.get("legacy") is not None:  # absent or null means legacy in 4.31
            kwargs["legacy"] = bool(config["legacy"])
        added_file = folder / "added_tokens.json"
        if added_file.is_file():
            added = json.loads(added_file.read_text())
            kwargs["added_tokens"] = [tok for tok, _ in sorted(added.items(), key=lambda kv: kv[1])]
        kwargs.update(overrides)
        tokenizer = cls(model, **kwargs)
        if added_file.is_file():
            for tok, wanted in json.loads(added_file.read_text()).items():
                if tokenizer.convert_tokens_to_ids(tok) != wanted:
                    raise ValueError(
                        f"{added_file}: {tok!r} should have id {wanted} but gets "
                        f"{tokenizer.convert_tokens_to_ids(tok)}; the file does not match tokenizer.model"
                    )
        return tokenizer

    def save_pretrained(self, folder: str | Path) -> tuple[str, ...]:
        """Write the files transformers 4.31's slow ``LlamaTokenizer`` reads back to the same ids.

        ``tokenizer.model``, ``tokenizer_config.json``, ``special_tokens_map.json`` and, when tokens
        were added, ``added_tokens.json`` (VISA's loader finds ``[SEG]`` there).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model = folder / TOKENIZER_MODEL
        if model.resolve() != self.model_file.resolve():
            shutil.copyfile(self.model_file, model)
        specials = {"bos_token": self.bos_token, "eos_token": self.eos_token, "unk_token": self.unk_token}
        if self.pad_token is not None:
            specials["pad_token"] = self.pad_token
        config = {
            "add_bos_token": self.add_bos_token,
            "add_eos_token": self.add_eos_token,
            **{k: _added_token_entry(v) for k, v in specials.items()},
            "clean_up_tokenization_spaces": False,
            "legacy": self.legacy,
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "sp_model_kwargs": {},
            "tokenizer_class": "LlamaTokenizer",
        }
        if self.pad_token is None:
            config["pad_token"] = None
        files = [model, folder / "tokenizer_config.json", folder / "special_tokens_map.json"]
        files[1].write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        # special_tokens_map.json spells the tokens without the "__type" marker
        special_map = {k: _added_token_entry(v) for k, v in specials.items()}
        special_map = {k: {f: x for f, x in v.items() if f != "__type"} for k, v in special_map.items()}
        files[2].write_text(json.dumps(special_map, indent=2) + "\n")
        if self.added_tokens_encoder:
            files.append(folder / "added_tokens.json")
            files[-1].write_text(json.dumps(self.added_tokens_encoder, indent=2) + "\n")
        return tuple(str(f) for f in files)

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        """Pieces of the sentencepiece model (added tokens not counted; ``len()`` counts them)."""
        return int(self.sp_model.get_piece_size())

    def __len__(self) -> int:
        return self.vocab_size + len(self.added_tokens_encoder)

    def get_vocab(self) -> dict[str, int]:
        """Piece -> id for the sentencepiece pieces and the added tokens."""
        vocab = {self.sp_model.id_to_piece(i): i for i in range(self.vocab_size)}
        vocab.update(self.added_tokens_encoder)
        return vocab

    @property
    def all_special_tokens(self) -> list[str]:
        tokens = [self.bos_token, self.eos_token, self.unk_token, self.pad_token]
        return list(dict.fromkeys(t for t in tokens if t is not None))

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]

    def _id_of(self, token: str | None) -> int | None:
        return None if token is None else self.convert_tokens_to_ids(token)

    @property
    def bos_token_id(self) -> int:
        return self._id_of(self.bos_token)

    @property
    def eos_token_id(self) -> int:
        return self._id_of(self.eos_token)

    @property
    def unk_token_id(self) -> int:
        return self._id_of(self.unk_token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id_of(self.pad_token)

    def add_tokens(self, tokens: str | Iterable[object]) -> int:
        """Add tokens after the vocabulary, as ``add_tokens`` of 4.31 does for plain strings.

        A token already known (a sentencepiece piece or an added token) is skipped. Added tokens are
        never split, and whitespace next to them is dropped when tokenizing.

        Arguments:
          tokens (str | Iterable[str | AddedToken]): ``"[SEG]"`` or a list (``AddedToken.content`` is used).
        Returns:
          int: how many tokens were new.
        """
        if isinstance(tokens, str):
            tokens = [tokens]
        added = 0
        for token in tokens:
            text = str(getattr(token, "content", token))
            if not text:
                raise ValueError("add_tokens: an added token cannot be empty")
            if text in self.added_tokens_encoder or self.sp_model.piece_to_id(text) != self.sp_model.unk_id():
                continue
            if text == self.unk_token:
                continue
            self.added_tokens_encoder[text] = len(self)
            added += 1
        return added

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Id of a piece or added token (``<unk>``'s id for unknown strings); lists map element-wise."""
        if isinstance(tokens, str):
            if tokens in self.added_tokens_encoder:
                return self.added_tokens_encoder[tokens]
            return int(self.sp_model.piece_to_id(tokens))
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(
        self, ids: int | Sequence[int], skip_special_tokens: bool = False
    ) -> str | list[str]:
        """Piece or added token of an id; lists map element-wise (special tokens dropped if asked)."""
        decoder = {i: t for t, i in self.added_tokens_encoder.items()}
        if isinstance(ids, int):
            return decoder.get(ids) or self.sp_model.id_to_piece(int(ids))
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.convert_ids_to_tokens(int(i)) for i in ids if int(i) not in special]

    # ------------------------------------------------------------------ encoding
    def _no_split_tokens(self) -> list[str]:
        return sorted({*self.all_special_tokens, *self.added_tokens_encoder}, key=len, reverse=True)

    def _split_on_no_split_tokens(self, text: str) -> list[str]:
        """Cut ``text`` at every no-split token, leftmost first, the longest token at one position."""
        candidates = self._no_split_tokens()
        parts: list[str] = []
        start = pos = 0
        while pos < len(text):
            match = next((t for t in candidates if text.startswith(t, pos)), None)
            if match is None:
                pos += 1
                continue
            if pos > start:
                parts.append(text[start:pos])
            parts.append(match)
            pos = start = pos + len(match)
        if start < len(text):
            parts.append(text[start:])
        return parts

    def _sp_pieces(self, text: str) -> list[str]:
        """sentencepiece pieces of one stretch of plain text (4.31's ``_tokenize``)."""
        if self.legacy:
            return list(self.sp_model.encode(text, out_type=str))
        is_first = text.startswith(SPIECE_UNDERLINE)
        if is_first:
            text = text[1:]
        pieces = list(self.sp_model.encode(text, out_type=str))
        if not is_first and not text.startswith(" ") and pieces and pieces[0].startswith(SPIECE_UNDERLINE):
            pieces = ([pieces[0][1:]] if len(pieces[0]) > 1 else []) + pieces[1:]
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """Pieces and added tokens of ``text`` (no ``<s>``), by the rules in the module docstring."""
        if not self.legacy:
            text = SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " ")
        parts = self._split_on_no_split_tokens(text)
        strips = set(self.added_tokens_encoder) - set(self.all_special_tokens)
        for i, part in enumerate(parts):
            if part in strips:
                if i + 1 < len(parts) and parts[i + 1] not in strips:
                    parts[i + 1] = parts[i + 1].lstrip()
                if i > 0 and parts[i - 1] not in strips:
                    parts[i - 1] = parts[i - 1].rstrip()
        no_split = set(self._no_split_tokens())
        out: list[str] = []
        for part in parts:
            if not part:
                continue
            out.extend([part] if part in no_split else self._sp_pieces(part))
        return out

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Ids of ``text``: ``<s>`` (if ``add_special_tokens``) and the ids of ``tokenize(text)``."""
        ids = self.convert_tokens_to_ids(self.tokenize(text))
        if add_special_tokens:
            ids = ([self.bos_token_id] if self.add_bos_token else []) + ids
            ids = ids + ([self.eos_token_id] if self.add_eos_token else [])
        return ids

    def __call__(self, text: str, add_special_tokens: bool = True) -> Encoding:
        """``tokenizer(text).input_ids`` as with a Hugging Face tokenizer (one string only)."""
        if not isinstance(text, str):
            raise TypeError(f"LlamaSentencePieceTokenizer takes one string, got {type(text).__name__}")
        ids = self.encode(text, add_special_tokens=add_special_tokens)
        return Encoding(input_ids=ids, attention_mask=[1] * len(ids))

    # ------------------------------------------------------------------ decoding
    def _pieces_to_string(self, pieces: list[str]) -> str:
        """4.31's ``convert_tokens_to_string``: sentencepiece decodes runs; special tokens stay verbatim."""
        out, run, prev_special = "", [], False
        for i, piece in enumerate(pieces):
            if piece in self.all_special_tokens:
                if not prev_special and i != 0:
                    out += " "
                out += self.sp_model.decode(run) + piece
                run, prev_special = [], True
            else:
                run.append(piece)
                prev_special = False
        return out + self.sp_model.decode(run)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``; added tokens are joined to their neighbours with one space (as in 4.31)."""
        texts, run = [], []
        for token in self.convert_ids_to_tokens([int(i) for i in ids], skip_special_tokens):
            if token in self.added_tokens_encoder:
                if run:
                    texts.append(self._pieces_to_string(run))
                    run = []
                texts.append(token)
            else:
                run.append(token)
        if run:
            texts.append(self._pieces_to_string(run))
        return " ".join(texts)

    def __repr__(self) -> str:
        return (
            f"LlamaSentencePieceTokenizer({self.model_file.name}, {self.vocab_size} pieces + "
            f"{list(self.added_tokens_encoder)}, legacy={self.legacy})"
        )
