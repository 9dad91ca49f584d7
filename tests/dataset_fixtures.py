"""Tiny datasets in their published layouts: ReasonSeg, refer, LLaVA JSON, LV-VIS, Ref-YouTube-VOS.

Each returns what a test needs to check the reader against: the expected masks and texts.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from visa_lib.data.formats import write_davis17_split, write_mevis_split
from visa_lib.data.revos import Expression, VideoMeta
from visa_lib.data.rle import encode_rle


def save_jpg(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)
    return path


def noise_image(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def box_mask(height: int, width: int, top: int, left: int, bottom: int, right: int) -> np.ndarray:
    """bool [H, W] with rows [top, bottom) and columns [left, right) set."""
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def box_polygon(top: int, left: int, bottom: int, right: int) -> list[list[float]]:
    """Corners ``[[x, y], ...]``; pycocotools fills rows [top, bottom) and columns [left, right)."""
    return [[left, top], [right, top], [right, bottom], [left, bottom]]


#: The explanation :func:`write_reasonseg` gives ``img_a`` in ``explanatory/<split>.json``.
EXPLANATION = "An umbrella keeps the rain off."


def write_reasonseg(root: Path, split: str = "train") -> dict[str, dict]:
    """Two ReasonSeg images; returns ``{name: {"texts", "label"}}`` with the expected label map.

    ``img_a`` (20x30, sentences, with an explanation): target box with corners (x, y) (3, 2)-(20, 12),
    an ignore box inside, corners (5, 4)-(9, 7), and a "flag" shape that must be skipped. ``img_b``
    (16x16, phrases): one target box. As in LISA, a polygon covers its outline, so a box with corners
    (x0, y0)-(x1, y1) covers rows y0..y1 inclusive.
    """
    folder = root / split
    expected = {}
    label_a = np.zeros((20, 30), np.uint8)
    label_a[box_mask(20, 30, 2, 3, 13, 21)] = 1
    label_a[box_mask(20, 30, 4, 5, 8, 10)] = 255
    shapes_a = [
        {"label": "ignore", "points": box_polygon(4, 5, 7, 9), "shape_type": "polygon"},
        {"label": "target", "points": box_polygon(2, 3, 12, 20), "shape_type": "polygon"},
        {"label": "flag", "points": box_polygon(0, 0, 20, 30), "shape_type": "polygon"},
    ]
    label_b = np.zeros((16, 16), np.uint8)
    label_b[box_mask(16, 16, 8, 8, 15, 16)] = 1
    shapes_b = [{"label": "target", "points": box_polygon(8, 8, 14, 15), "shape_type": "polygon"}]
    for name, (height, width), texts, shapes, label in (
        (
            "img_a",
            (20, 30),
            ["what keeps the rain off?", "what would you hold in a storm?"],
            shapes_a,
            label_a,
        ),
        ("img_b", (16, 16), ["the object you sit on"], shapes_b, label_b),
    ):
        save_jpg(folder / f"{name}.jpg", noise_image(height, width, len(name)))
        annotation = {"text": texts, "is_sentence": name == "img_a", "shapes": shapes}
        (folder / f"{name}.json").write_text(json.dumps(annotation))
        expected[name] = {"texts": texts, "label": label}
    explanations = [{"image": "img_a.jpg", "query": "what keeps the rain off?", "outputs": EXPLANATION}]
    (root / "explanatory").mkdir(parents=True, exist_ok=True)
    (root / "explanatory" / f"{split}.json").write_text(json.dumps(explanations))
    return expected


def write_refer(root: Path, dataset: str = "refcoco", split_by: str = "unc") -> dict[int, np.ndarray]:
    """A refer dataset under ``root`` (= refer_seg): 2 images, 3 refs; returns ``{ann_id: bool [H, W]}``.

    Annotation 11 is a polygon, 12 a compressed RLE, 13 an uncompressed RLE; ref 3 is in split "val".
    """
    height, width = 24, 32
    masks = {
        11: box_mask(height, width, 2, 2, 10, 12),
        12: box_mask(height, width, 12, 14, 20, 30),
        13: box_mask(height, width, 5, 5, 15, 9),
    }
    uncompressed_counts = []  # column-major run lengths, starting with zeros
    flat = masks[13].flatten(order="F")
    value, run = False, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            uncompressed_counts.append(run)
            value, run = pixel, 1
    uncompressed_counts.append(run)
    instances = {
        "images": [
            {"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": height, "width": width},
            {"id": 2, "file_name": "COCO_train2014_000000000002.jpg", "height": height, "width": width},
        ],
        "annotations": [
            {"id": 11, "image_id": 1, "segmentation": [sum(box_polygon(2, 2, 10, 12), [])], "category_id": 1},
            {"id": 12, "image_id": 1, "segmentation": encode_rle(masks[12]), "category_id": 2},
            {"id": 13, "image_id": 2, "iscrowd": 1, "category_id": 1,
             "segmentation": {"size": [height, width], "counts": uncompressed_counts}},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
    }  # fmt: skip
    refs = [
        {"ref_id": 0, "ann_id": 11, "image_id": 1, "split": "train", "category_id": 1,
         "sentences": [{"sent": "man on the left", "raw": "Man on the left", "sent_id": 0}]},
        {"ref_id": 1, "ann_id": 12, "image_id": 1, "split": "train", "category_id": 2,
         "sentences": [{"sent": "brown dog", "sent_id": 1}, {"sent": "dog lying down", "sent_id": 2}]},
        {"ref_id": 2, "ann_id": 13, "image_id": 2, "split": "train", "category_id": 1,
         "sentences": [{"sent": "crowd in the back", "sent_id": 3}]},
        {"ref_id": 3, "ann_id": 13, "image_id": 2, "split": "val", "category_id": 1,
         "sentences": [{"sent": "people far away", "sent_id": 4}]},
    ]  # fmt: skip
    folder = root / dataset
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "instances.json").write_text(json.dumps(instances))
    with open(folder / f"refs({split_by}).p", "wb") as fh:
        pickle.dump(refs, fh, protocol=2)  # the published files are Python 2 protocol-2 pickles
    for image in instances["images"]:
        save_jpg(root / "images/mscoco/images/train2014" / image["file_name"], noise_image(height, width, 7))
    return masks


def write_instruction_json(root: Path) -> Path:
    """A LLaVA-style JSON: one image entry (2 rounds), one two-image entry, one video-folder entry."""
    save_jpg(root / "images" / "000001.jpg", noise_image(20, 24, 1))
    save_jpg(root / "images" / "000002.jpg", noise_image(10, 12, 2))
    for t in range(14):
        save_jpg(root / "images" / "clip" / f"{t:05d}.jpg", np.full((12, 16, 3), t * 10, np.uint8))
    entries = [
        {"id": "a", "image": "000001.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat is in the image?"},
            {"from": "gpt", "value": "A red square."},
            {"from": "human", "value": "Where is it?"},
            {"from": "gpt", "value": "On the left."}]},
        {"id": "b", "image": ["000001.jpg", "000002.jpg"], "conversations": [
            {"from": "human", "value": "Compare <image> and <image>."},
            {"from": "gpt", "value": "They differ."}]},
        {"id": "c", "video": "clip", "conversations": [
            {"from": "human", "value": "<video>\nWhat happens?"},
            {"from": "gpt", "value": "It gets brighter."}]},
    ]  # fmt: skip
    path = root / "llava_instruct.json"
    path.write_text(json.dumps(entries))
    return path


def two_videos() -> tuple[list[VideoMeta], dict[int, np.ndarray], dict[str, list[np.ndarray]]]:
    """Two videos (6 frames 12x16, 5 frames 10x14), moving boxes: ``(videos, {anno_id: masks}, frames)``."""
    masks, frames = {}, {}
    videos = []
    for v, (name, count, height, width) in enumerate((("cat_run", 6, 12, 16), ("traffic_light", 5, 10, 14))):
        anno = np.zeros((count, height, width), bool)
        for t in range(count):
            anno[t, 2:6, t : t + 5] = True
        masks[v + 1] = anno
        frames[name] = [
            np.where(anno[t][..., None], 200, 30).astype(np.uint8).repeat(3, -1) for t in range(count)
        ]
        text = "the running_cat" if v == 0 else "traffic_light"
        expressions = {"0": Expression("0", text, [1], [v + 1])}
        videos.append(VideoMeta(name, [f"{t:05d}" for t in range(count)], expressions, height, width))
    return videos, masks, frames


def write_lvvis(root: Path, split: str = "train") -> Path:
    videos, masks, frames = two_videos()
    return write_mevis_split(root, split, videos, masks, frames)


def write_refytvos_published(root: Path, split: str = "train") -> Path:
    """Ref-YouTube-VOS as released: ``meta_expressions/<split>/meta_expressions.json`` + ``<split>/*.pkl``."""
    videos, masks, frames = two_videos()
    by_expression = {(v.name, "0"): masks[k + 1] for k, v in enumerate(videos)}
    folder = write_davis17_split(root, split, videos, by_expression, frames, fmt="pkl")
    meta_dir = root / "meta_expressions" / split
    meta_dir.mkdir(parents=True, exist_ok=True)
    shutil.move(folder / "meta_expressions.json", meta_dir / "meta_expressions.json")
    return folder


# -- pickles that try to run code (the restricted unpickler must refuse them and run nothing) -----------
class OpensFile:
    """Unpickling this calls ``open(marker, "w")``: the classic way a doctored pickle runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class RunsShell:
    """Unpickling this calls ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))
