"""LLaVA / Chat-UniVi instruction data: conversations about an image, a few images or a video, no masks.

VISA keeps the LLM's conversational ability by mixing these into training (``vqa`` = LLaVA-Instruct-150K
and Chat-UniVi's instruction sets); they supervise text only. The layout (``docs/datasets.md``)::

    <json file>   [{"id": ..., "image": "<file>" | ["<file>", ...] (optional), "video": "<file or folder>"
                    (optional), "conversations": [{"from": "human", "value": "<image>\\nQuestion"},
                                                   {"from": "gpt", "value": "Answer"}, ...]}, ...]
    <image root>/<file>        images named by "image"
    <video root>/<file>        videos named by "video" (a video file or a folder of frames)

Turns alternate human / gpt (a leading gpt message is dropped, as VISA's loaders do). The text is kept as
written, ``<image>`` / ``<video>`` placeholders included; ``visa_lib.train.sample_builders`` turns them
into VISA's numbered frame slots (LLaVA and Chat-UniVi data are placed differently).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visa_lib.data.revos import DatasetFormatError, read_json

#: Roles of the two speakers in the JSON (``"from"``); LLaVA also writes "user"/"assistant" in places.
HUMAN_ROLES = ("human", "user")
GPT_ROLES = ("gpt", "assistant")


@dataclass
class InstructionItem:
    """One conversation.

    Attributes:
      turns (list[tuple[str, str]]): ``(question, answer)`` rounds as written (placeholders kept).
      image_paths (list[Path]): images the conversation is about, in order (empty if none).
      video_path (Path | None): a video file or frame folder the conversation is about.
    """

    turns: list[tuple[str, str]]
    image_paths: list[Path]
    video_path: Path | None = None


def _parse_entry(entry: Any, where: str) -> tuple[list[tuple[str, str]], list[str], str | None]:
    if not isinstance(entry, dict) or not isinstance(entry.get("conversations"), list):
        raise DatasetFormatError(f"{where}: expected {{'conversations': [{{'from', 'value'}}, ...], ...}}")
    messages = entry["conversations"]
    if messages and isinstance(messages[0], dict) and messages[0].get("from") in GPT_ROLES:
        messages = messages[1:]  # a conversation opened by the assistant: its first message is dropped
    if len(messages) < 2 or len(messages) % 2:
        raise DatasetFormatError(
            f"{where}: 'conversations' must hold human/gpt pairs, got {len(messages)} turns"
        )
    turns = []
    for k in range(0, len(messages), 2):
        pair = messages[k : k + 2]
        if not all(isinstance(m, dict) and isinstance(m.get("value"), str) for m in pair):
            raise DatasetFormatError(f"{where}: turn {k} needs 'from' and a string 'value'")
        if pair[0].get("from") not in HUMAN_ROLES or pair[1].get("from") not in GPT_ROLES:
            raise DatasetFormatError(
                f"{where}: turns {k},{k + 1} are from {pair[0].get('from')!r},{pair[1].get('from')!r}; "
                "expected 'human' then 'gpt'"
            )
        question, answer = pair[0]["value"].strip(), pair[1]["value"].strip()
        if not answer:
            raise DatasetFormatError(f"{where}: turn {k + 1} has an empty answer")
        turns.append((question, answer))
    images = entry.get("image", [])
    images = [images] if isinstance(images, str) else images
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise DatasetFormatError(f"{where}: 'image' must be a file name or a list of file names")
    video = entry.get("video")
    if video is not None and not isinstance(video, str):
        raise DatasetFormatError(f"{where}: 'video' must be a file or folder name")
    return turns, images, video


class InstructionDataset:
    """A LLaVA / Chat-UniVi-format instruction JSON, validated on load.

    Arguments:
      json_path (str | Path): the list of conversations.
      image_root (str | Path | None): folder of the ``"image"`` names (default: the JSON's folder).
      video_root (str | Path | None): folder of the ``"video"`` names (default: ``image_root``).
    Raises:
      FileNotFoundError: the JSON is missing.
      DatasetFormatError: not a list of conversations; a turn out of order; an empty answer (names the entry).
    """

    def __init__(
        self,
        json_path: str | Path,
        image_root: str | Path | None = None,
        video_root: str | Path | None = None,
    ) -> None:
        self.json_path = Path(json_path)
        data = read_json(self.json_path)
        if not isinstance(data, list) or not data:
            raise DatasetFormatError(
                f"{self.json_path}: expected a non-empty JSON list of {{'conversations': [...]}} entries"
            )
        self.image_root = Path(image_root) if image_root is not None else self.json_path.parent
        self.video_root = Path(video_root) if video_root is not None else self.image_root
        self._entries = []
        for k, entry in enumerate(data):
            ident = entry.get("id", k) if isinstance(entry, dict) else k
            self._entries.append(_parse_entry(entry, f"{self.json_path}: entry {k} (id {ident!r})"))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"InstructionDataset(json_path={str(self.json_path)!r}, conversations={len(self)})"

    def item(self, index: int) -> InstructionItem:
        """Conversation ``index`` with its image / video paths resolved."""
        turns, images, video = self._entries[index]
        return InstructionItem(
            turns=list(turns),
            image_paths=[self.image_root / name for name in images],
            video_path=self.video_root / video if video is not None else None,
        )
