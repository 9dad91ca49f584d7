"""Single-image segmentation data VISA mixes into training: LISA's ReasonSeg and the refer datasets.

Both are read into the same small interface, so the sample construction (``visa_lib.train.mixture``)
treats them alike: image ``i`` has ``queries(i)`` (texts), ``masks(i, picks)`` (one mask per picked
query) and ``read_image(i)``. The layouts are described in ``docs/datasets.md``.

ReasonSeg (LISA)::

    ReasonSeg/<split>/<name>.jpg      the image
    ReasonSeg/explanatory/<split>.json   optional: [{"image": "<name>.jpg", "query": str, "outputs": str}]
    ReasonSeg/<split>/<name>.json     {"text": [query, ...], "is_sentence": bool, "shapes":
                                       [{"label": "target"|"ignore"|"flag", "points": [[x, y], ...]}]}

The mask is drawn polygon by polygon, largest first, "target" as 1 and "ignore" as 255, "flag" skipped,
with OpenCV exactly as LISA draws it (points truncated to integers, outline included); every query of an
image refers to that one mask. Training supervises ``mask == 1`` (ignored regions count as background, as
in LISA). Some of the published JSON files are cp1252-encoded rather than UTF-8; both are read. The
explanatory file gives some images a textual explanation (``outputs``) that VISA sometimes trains on.

refCOCO / refCOCO+ / refCOCOg / refCLEF (the "refer" annotations)::

    refer_seg/<dataset>/refs(<split_by>).p    pickle: [{"ref_id", "ann_id", "image_id", "split",
                                                         "sentences": [{"sent": str, ...}], ...}]
    refer_seg/<dataset>/instances.json        COCO: {"images": [{"id", "file_name", "height", "width"}],
                                                     "annotations": [{"id", "image_id", "segmentation"}]}
    refer_seg/images/mscoco/images/train2014/<file_name>   (refCLEF: refer_seg/images/saiapr_tc-12/)

``split_by`` is ``umd`` for refCOCOg and ``unc`` otherwise. The pickle goes through the restricted
unpickler; polygons and RLEs are decoded with pycocotools.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visa_lib.data.revos import DatasetFormatError, read_json
from visa_lib.data.rle import decode_segmentation
from visa_lib.data.safe_pickle import load_pickle

#: ReasonSeg mask value of a region to ignore (LISA's convention); targets are 1.
IGNORE_VALUE = 255
#: ``refs(<split_by>).p`` of each refer dataset (LISA's choice).
REFER_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd", "refclef": "unc"}
#: Image folder of each refer dataset, relative to the refer_seg root.
REFER_IMAGE_DIRS = {
    "refcoco": "images/mscoco/images/train2014",
    "refcoco+": "images/mscoco/images/train2014",
    "refcocog": "images/mscoco/images/train2014",
    "refclef": "images/saiapr_tc-12",
}


def read_image(path: Path) -> np.ndarray:
    """``uint8 [H,W,3]`` RGB image (cv2 + BGR->RGB, as VISA reads frames); a clear error if unreadable."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{path}: image missing or unreadable; check the dataset's image folder")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------------------------- ReasonSeg


@dataclass
class _ReasonSegImage:
    image_path: Path
    json_path: Path
    texts: list[str]
    is_sentence: bool
    shapes: list[tuple[str, np.ndarray]]  # (label, int32 points [P, 2])


def _parse_reasonseg_json(path: Path) -> tuple[list[str], bool, list[tuple[str, np.ndarray]]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")  # some published ReasonSeg files are cp1252
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{path}: malformed JSON at line {err.lineno}: {err.msg}") from None
    expected = '{"text": [...], "is_sentence": bool, "shapes": [{"label", "points"}]}'
    if not isinstance(data, dict) or "text" not in data or "shapes" not in data:
        raise DatasetFormatError(f"{path}: not a ReasonSeg annotation; expected {expected}")
    texts = [data["text"]] if isinstance(data["text"], str) else data["text"]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise DatasetFormatError(f"{path}: 'text' must be a non-empty list of query strings")
    if not isinstance(data["shapes"], list):
        raise DatasetFormatError(f"{path}: 'shapes' must be a list of polygons; expected {expected}")
    shapes = []
    for k, shape in enumerate(data["shapes"]):
        if not isinstance(shape, dict) or "label" not in shape or "points" not in shape:
            raise DatasetFormatError(f"{path}: shape {k} needs 'label' and 'points'")
        label = str(shape["label"]).lower()
        if label == "flag":
            continue
        try:
            points = np.asarray(shape["points"], dtype=float)
        except (TypeError, ValueError):
            raise DatasetFormatError(f"{path}: shape {k} 'points' must be [[x, y], ...]") from None
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
            raise DatasetFormatError(f"{path}: shape {k} 'points' must be at least 3 [x, y] pairs")
        shapes.append((label, points.astype(np.int32)))  # LISA truncates the points to integers
    return [t.strip() for t in texts], bool(data.get("is_sentence", False)), shapes


def _read_explanations(path: Path) -> dict[str, str]:
    items = read_json(path)
    expected = '[{"image": "<name>.jpg", "query": str, "outputs": str}, ...]'
    if not isinstance(items, list):
        raise DatasetFormatError(f"{path}: expected a list of explanations {expected}")
    out = {}
    for k, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("image"), str) or "outputs" not in item:
            raise DatasetFormatError(f"{path}: entry {k} needs 'image' and 'outputs'; expected {expected}")
        out[item["image"]] = str(item["outputs"]).strip()
    return out


class ReasonSegDataset:
    """LISA's ReasonSeg split: images, their reasoning queries and one polygon mask per image.

    Arguments:
      root (str | Path): the ``ReasonSeg`` folder holding ``<split>/``, or the split folder itself.
      split (str): ``"train"``, ``"val"`` or ``"test"``.
      explanatory (str | Path | None): the explanations file; default ``root/explanatory/<split>.json``
        when it exists (``False`` reads none).
    Raises:
      FileNotFoundError: no split folder, no images, or an image without its ``.json``.
      DatasetFormatError: a JSON that is not a ReasonSeg annotation (the message names the file).
    """

    def __init__(
        self, root: str | Path, split: str = "train", explanatory: str | Path | bool | None = None
    ) -> None:
        root = Path(root)
        folder = root / split if (root / split).is_dir() else root
        images = sorted(p for p in folder.glob("*.jpg")) if folder.is_dir() else []
        if not images:
            raise FileNotFoundError(
                f"{root}: no ReasonSeg images in {root / split} or {root}; expected <split>/<name>.jpg with "
                "<name>.json beside each"
            )
        self.folder = folder
        self.split = split
        self._items: list[_ReasonSegImage] = []
        for image_path in images:
            json_path = image_path.with_suffix(".json")
            if not json_path.is_file():
                raise FileNotFoundError(f"{json_path}: missing; every ReasonSeg image needs its annotation")
            texts, is_sentence, shapes = _parse_reasonseg_json(json_path)
            self._items.append(_ReasonSegImage(image_path, json_path, texts, is_sentence, shapes))
        if explanatory is None:
            default = root / "explanatory" / f"{split}.json"
            explanatory = default if default.is_file() else False
        self._explanations = _read_explanations(Path(explanatory)) if explanatory is not False else {}

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ReasonSegDataset(folder={str(self.folder)!r}, images={len(self)})"

    def queries(self, index: int) -> list[str]:
        """The query texts of image ``index`` (all refer to the same mask)."""
        return list(self._items[index].texts)

    def is_sentence(self, index: int) -> bool:
        """Whether image ``index``'s queries are sentences (reasoning) rather than phrases."""
        return self._items[index].is_sentence

    def explanation(self, index: int) -> str | None:
        """The explanation of image ``index`` from the explanatory file, if it has one."""
        return self._explanations.get(self._items[index].image_path.name)

    def read_image(self, index: int) -> np.ndarray:
        """``uint8 [H,W,3]`` RGB image ``index``."""
        return read_image(self._items[index].image_path)

    def label_map(self, index: int, height: int, width: int) -> np.ndarray:
        """``uint8 [H,W]``: 1 on the target, 255 where ignored, 0 elsewhere (largest polygon drawn first)."""
        import cv2

        def draw(canvas: np.ndarray, points: np.ndarray, value: int) -> None:
            cv2.polylines(canvas, [points], True, value, 1)  # the outline belongs to the region
            cv2.fillPoly(canvas, [points], value)

        item = self._items[index]
        areas = []
        for _, points in item.shapes:
            single = np.zeros((height, width), dtype=np.uint8)
            draw(single, points, 1)
            areas.append(int(single.sum()))
        label = np.zeros((height, width), dtype=np.uint8)
        for k in np.argsort(areas)[::-1]:  # largest first, so smaller regions end up on top (LISA's order)
            name, points = item.shapes[int(k)]
            draw(label, points, IGNORE_VALUE if "ignore" in name else 1)
        return label

    def masks(self, index: int, picks: Sequence[int], size: tuple[int, int]) -> np.ndarray:
        """``bool [len(picks),H,W]``: the target (label 1) once per picked query; ``size`` is ``(H, W)``."""
        target = self.label_map(index, *size) == 1
        return np.repeat(target[None], len(picks), axis=0)


# ------------------------------------------------------------------------------------------------- refer


def _refer_files(root: Path, dataset: str, split_by: str) -> tuple[Path, Path]:
    folder = root / dataset
    refs_path, instances_path = folder / f"refs({split_by}).p", folder / "instances.json"
    for path in (refs_path, instances_path):
        if not path.is_file():
            found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else "no such folder"
            raise FileNotFoundError(
                f"{path}: not found (in {folder}: {found}); a refer dataset needs refs(<split_by>).p and "
                "instances.json under refer_seg/<dataset>/"
            )
    return refs_path, instances_path


class ReferSegDataset:
    """refCOCO / refCOCO+ / refCOCOg / refCLEF: images whose referred objects each have a few sentences.

    Image ``i`` has one query per sentence of every ref on it; ``masks(i, picks)`` decodes the referred
    annotation of each picked sentence.

    Arguments:
      root (str | Path): the ``refer_seg`` folder (holding ``<dataset>/`` and ``images/``).
      dataset (str): ``"refcoco"``, ``"refcoco+"``, ``"refcocog"`` or ``"refclef"``.
      split (str): the refs' ``split`` value to keep (``"train"``, ``"val"``, ``"testA"``, ...).
      split_by (str | None): ``refs(<split_by>).p``; default :data:`REFER_SPLIT_BY`.
      image_root (str | Path | None): folder of the images; default ``root /`` :data:`REFER_IMAGE_DIRS`.
    Raises:
      FileNotFoundError: a missing annotation file.
      DatasetFormatError: refs or instances of the wrong shape, or a ref naming an unknown image/annotation.
    """

    def __init__(
        self,
        root: str | Path,
        dataset: str = "refcoco",
        split: str = "train",
        split_by: str | None = None,
        image_root: str | Path | None = None,
    ) -> None:
        root = Path(root)
        if split_by is None:
            if dataset not in REFER_SPLIT_BY:
                raise ValueError(f"ReferSegDataset: unknown dataset {dataset!r}; give split_by= explicitly")
            split_by = REFER_SPLIT_BY[dataset]
        refs_path, instances_path = _refer_files(root, dataset, split_by)
        self.dataset, self.split = dataset, split
        default_images = root / REFER_IMAGE_DIRS.get(dataset, "images")
        self.image_root = Path(image_root) if image_root is not None else default_images
        try:
            refs = load_pickle(refs_path)
        except ValueError as err:  # UnsafePickleError included: nothing from the file ran
            raise DatasetFormatError(str(err)) from None
        instances = read_json(instances_path)
        images, annotations = self._index_instances(instances, instances_path)
        by_image: dict[int, list[tuple[str, int]]] = {}
        for k, ref in enumerate(refs if isinstance(refs, list) else [None]):
            where = f"{refs_path}: ref {k}"
            if not isinstance(ref, dict) or not {"image_id", "ann_id", "sentences", "split"} <= set(ref):
                raise DatasetFormatError(
                    f"{where}: expected a list of refs {{'image_id', 'ann_id', 'sentences', 'split'}}"
                )
            if ref["split"] != split:
                continue
            if ref["image_id"] not in images or ref["ann_id"] not in annotations:
                raise DatasetFormatError(
                    f"{where}: image_id {ref['image_id']} or ann_id {ref['ann_id']} is not in "
                    f"{instances_path}; the two files do not belong together"
                )
            sentences = [s.get("sent", "") if isinstance(s, dict) else "" for s in ref["sentences"]]
            if not sentences or not all(isinstance(s, str) and s.strip() for s in sentences):
                raise DatasetFormatError(f"{where}: 'sentences' must be [{{'sent': str}}, ...]")
            by_image.setdefault(ref["image_id"], []).extend((s.strip(), ref["ann_id"]) for s in sentences)
        if not by_image:
            raise DatasetFormatError(f"{refs_path}: no ref has split {split!r}")
        self._images = images
        self._annotations = annotations
        self._image_ids = sorted(by_image)
        self._queries = by_image

    @staticmethod
    def _index_instances(instances: Any, path: Path) -> tuple[dict[int, dict], dict[int, dict]]:
        if not isinstance(instances, dict) or not {"images", "annotations"} <= set(instances):
            raise DatasetFormatError(
                f"{path}: expected COCO instances {{'images': [...], 'annotations': [...]}}"
            )
        images, annotations = {}, {}
        for image in instances["images"]:
            if not isinstance(image, dict) or not {"id", "file_name", "height", "width"} <= set(image):
                raise DatasetFormatError(f"{path}: every image needs 'id', 'file_name', 'height', 'width'")
            images[image["id"]] = image
        for ann in instances["annotations"]:
            if not isinstance(ann, dict) or not {"id", "image_id", "segmentation"} <= set(ann):
                raise DatasetFormatError(f"{path}: every annotation needs 'id', 'image_id', 'segmentation'")
            annotations[ann["id"]] = ann
        return images, annotations

    def __len__(self) -> int:
        return len(self._image_ids)

    def __repr__(self) -> str:
        return f"ReferSegDataset(dataset={self.dataset!r}, split={self.split!r}, images={len(self)})"

    def queries(self, index: int) -> list[str]:
        """Every sentence of every ref on image ``index``."""
        return [sentence for sentence, _ in self._queries[self._image_ids[index]]]

    def is_sentence(self, index: int) -> bool:
        """Refer sentences are phrases: always False (VISA asks about them with the short questions)."""
        return False

    def explanation(self, index: int) -> str | None:
        """Refer data has no explanations: always None."""
        return None

    def image_path(self, index: int) -> Path:
        """Path of image ``index`` (``image_root / file_name``)."""
        return self.image_root / self._images[self._image_ids[index]]["file_name"]

    def read_image(self, index: int) -> np.ndarray:
        """``uint8 [H,W,3]`` RGB image ``index``."""
        return read_image(self.image_path(index))

    def masks(self, index: int, picks: Sequence[int], size: tuple[int, int]) -> np.ndarray:
        """``bool [len(picks),H,W]``: the referred object of each picked sentence; ``size`` is ``(H, W)``."""
        image_id = self._image_ids[index]
        info = self._images[image_id]
        if (int(info["height"]), int(info["width"])) != tuple(size):
            raise DatasetFormatError(
                f"{self.image_path(index)}: image is {size[0]}x{size[1]} but instances.json says "
                f"{info['height']}x{info['width']}; the images do not belong to these annotations"
            )
        queries = self._queries[image_id]
        out = np.zeros((len(picks), *size), dtype=bool)
        for row, pick in enumerate(picks):
            segmentation = self._annotations[queries[pick][1]]["segmentation"]
            out[row] = decode_segmentation(segmentation, *size) > 0
        return out
