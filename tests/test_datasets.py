"""Dataset readers on tiny fixtures written in each published layout, and their errors on wrong layouts."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from dataset_fixtures import (
    RunsShell,
    two_videos,
    write_instruction_json,
    write_lvvis,
    write_reasonseg,
    write_refer,
    write_refytvos_published,
)

from visa_lib.data.formats import load_davis17, load_lvvis, load_mevis, load_refytvos, write_mevis_split
from visa_lib.data.image_datasets import ReasonSegDataset, ReferSegDataset
from visa_lib.data.instruction import InstructionDataset
from visa_lib.data.revos import DatasetFormatError
from visa_lib.data.rle import decode_segmentation, encode_rle

# ------------------------------------------------------------------------------------------------- videos


def test_mevis_train_split(tmp_path):
    videos, masks, frames = two_videos()
    write_mevis_split(tmp_path, "train", videos, masks, frames)
    split = load_mevis(tmp_path, "train")
    np.testing.assert_array_equal(split.gt_masks("cat_run", "0"), masks[1].astype(np.uint8))
    assert split.videos["traffic_light"].expressions["0"].text == "traffic_light"  # MeViS keeps the text


def test_lvvis_reads_mevis_layout_and_spaces_category_names(tmp_path):
    folder = write_lvvis(tmp_path)
    split = load_lvvis(tmp_path)
    assert split.videos["traffic_light"].expressions["0"].text == "traffic light"
    assert split.videos["cat_run"].expressions["0"].text == "the running cat"
    np.testing.assert_array_equal(split.read_frame("cat_run", 2).shape, (12, 16, 3))
    (folder / "mask_dict.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"mask_dict.json: file not found; LV-VIS"):
        load_lvvis(tmp_path)


@pytest.mark.parametrize("load", [load_refytvos, load_davis17])
def test_refytvos_and_davis17_published_layout_with_pickled_masks(tmp_path, load):
    write_refytvos_published(tmp_path)
    assert (tmp_path / "meta_expressions" / "train" / "meta_expressions.json").is_file()
    split = load(tmp_path, "train")
    _, masks, _ = two_videos()
    # sorted video names: "cat_run" is expression 0, "traffic_light" expression 1
    assert split.videos["traffic_light"].expressions["0"].anno_ids == [1]
    np.testing.assert_array_equal(split.gt_masks("traffic_light", "0"), masks[2].astype(np.uint8))
    assert split.frame_path("cat_run", 0) == tmp_path / "train" / "JPEGImages" / "cat_run" / "00000.jpg"
    assert split.read_frame("cat_run", 0).shape == (12, 16, 3)


def test_refytvos_refuses_a_pickle_that_runs_code(tmp_path):
    folder = write_refytvos_published(tmp_path)
    marker = tmp_path / "ran"
    with open(folder / "mask_dict.pkl", "wb") as fh:
        pickle.dump({"0": RunsShell(f"touch {marker}")}, fh)
    with pytest.raises(DatasetFormatError, match=r"mask_dict.pkl: the pickle asks for (posix|os|nt)\.system"):
        load_refytvos(tmp_path)
    assert not marker.exists()


def test_refytvos_wrong_layout_names_the_places_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no meta_expressions.json in .*meta_expressions/train"):
        load_refytvos(tmp_path, "train")


# ------------------------------------------------------------------------------------------------- images


def test_reasonseg_polygons_ignore_and_flag(tmp_path):
    expected = write_reasonseg(tmp_path)
    data = ReasonSegDataset(tmp_path, "train")
    assert len(data) == 2
    assert data.queries(0) == expected["img_a"]["texts"] and data.is_sentence(0)
    image = data.read_image(0)
    assert image.shape == (20, 30, 3)
    np.testing.assert_array_equal(data.label_map(0, 20, 30), expected["img_a"]["label"])  # flag skipped
    masks = data.masks(0, [0, 1], (20, 30))
    assert masks.shape == (2, 20, 30) and masks.dtype == bool
    np.testing.assert_array_equal(masks[1], expected["img_a"]["label"] == 1)  # ignore -> background
    assert ReasonSegDataset(tmp_path / "train").queries(1) == expected["img_b"]["texts"]  # split folder


def test_reasonseg_cp1252_json_and_fractional_points(tmp_path):
    write_reasonseg(tmp_path)
    annotation = {
        "text": ["what\u2019s used to sit?"],
        "is_sentence": True,
        "shapes": [{"label": "target", "points": [[8.9, 8.2], [15.7, 8.2], [15.7, 14.9], [8.9, 14.9]]}],
    }
    (tmp_path / "train" / "img_b.json").write_bytes(
        json.dumps(annotation, ensure_ascii=False).encode("cp1252")
    )
    data = ReasonSegDataset(tmp_path)
    assert data.queries(1) == ["what\u2019s used to sit?"]
    expected = np.zeros((16, 16), np.uint8)
    expected[8:15, 8:16] = 1  # points truncated to (8, 8)-(15, 14), outline included
    np.testing.assert_array_equal(data.label_map(1, 16, 16), expected)


def test_reasonseg_errors_name_the_file(tmp_path):
    write_reasonseg(tmp_path)
    bad = tmp_path / "train" / "img_b.json"
    bad.write_text(json.dumps({"text": ["x"], "polygons": []}))
    with pytest.raises(DatasetFormatError, match=r"img_b.json: not a ReasonSeg annotation; expected"):
        ReasonSegDataset(tmp_path)
    bad.write_text(json.dumps({"text": ["x"], "shapes": [{"label": "target", "points": [[0, 0], [1, 1]]}]}))
    with pytest.raises(DatasetFormatError, match=r"img_b.json: shape 0 'points' must be at least 3"):
        ReasonSegDataset(tmp_path)
    bad.unlink()
    with pytest.raises(FileNotFoundError, match=r"img_b.json: missing"):
        ReasonSegDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="no ReasonSeg images"):
        ReasonSegDataset(tmp_path / "nowhere")


def test_refer_polygon_and_rle_annotations(tmp_path):
    masks = write_refer(tmp_path, "refcoco")
    data = ReferSegDataset(tmp_path, "refcoco", "train")
    assert len(data) == 2
    assert data.queries(0) == ["man on the left", "brown dog", "dog lying down"]
    assert data.queries(1) == ["crowd in the back"]  # the "val" ref is left out
    image = data.read_image(0)
    got = data.masks(0, [0, 2], image.shape[:2])
    np.testing.assert_array_equal(got[0], masks[11])  # polygon
    np.testing.assert_array_equal(got[1], masks[12])  # compressed RLE
    np.testing.assert_array_equal(data.masks(1, [0], (24, 32))[0], masks[13])  # uncompressed RLE
    assert ReferSegDataset(tmp_path, "refcoco", "val").queries(0) == ["people far away"]


def test_refcocog_uses_umd_and_errors(tmp_path):
    write_refer(tmp_path, "refcocog", split_by="umd")
    assert len(ReferSegDataset(tmp_path, "refcocog")) == 2
    with pytest.raises(FileNotFoundError, match=r"refs\(unc\).p: not found"):
        ReferSegDataset(tmp_path, "refcocog", split_by="unc")
    refs_path = tmp_path / "refcocog" / "refs(umd).p"
    with open(refs_path, "wb") as fh:
        pickle.dump([{"image_id": 1, "ann_id": 99, "sentences": [{"sent": "x"}], "split": "train"}], fh)
    with pytest.raises(
        DatasetFormatError, match=r"ref 0: image_id 1 or ann_id 99 is not in .*instances.json"
    ):
        ReferSegDataset(tmp_path, "refcocog")
    marker = tmp_path / "ran"
    with open(refs_path, "wb") as fh:
        pickle.dump([RunsShell(f"touch {marker}")], fh)
    with pytest.raises(DatasetFormatError, match="not plain data"):
        ReferSegDataset(tmp_path, "refcocog")
    assert not marker.exists()
    (tmp_path / "refcocog" / "instances.json").write_text(json.dumps({"images": []}))
    with open(refs_path, "wb") as fh:
        pickle.dump([], fh)
    with pytest.raises(DatasetFormatError, match="expected COCO instances"):
        ReferSegDataset(tmp_path, "refcocog")


def test_refer_image_size_mismatch(tmp_path):
    write_refer(tmp_path)
    data = ReferSegDataset(tmp_path)
    with pytest.raises(DatasetFormatError, match="do not belong to these annotations"):
        data.masks(0, [0], (10, 10))


def test_decode_segmentation_polygons_union_and_rle():
    square = [[0, 0, 4, 0, 4, 4, 0, 4]]
    other = [[6, 6, 8, 6, 8, 8, 6, 8]]
    mask = decode_segmentation(square + other, 10, 10)
    assert mask.sum() == 16 + 4
    np.testing.assert_array_equal(decode_segmentation(encode_rle(mask), 10, 10), mask)
    assert decode_segmentation([], 3, 5).shape == (3, 5)
    rles = [encode_rle(decode_segmentation(square, 10, 10)), encode_rle(decode_segmentation(other, 10, 10))]
    np.testing.assert_array_equal(decode_segmentation(rles, 10, 10), mask)  # a list of RLEs: their union
    with pytest.raises(ValueError, match="list of polygons or an RLE"):
        decode_segmentation("nope", 3, 3)


# -------------------------------------------------------------------------------------------- instructions


def test_instruction_json_images_and_video(tmp_path):
    path = write_instruction_json(tmp_path)
    data = InstructionDataset(path, image_root=tmp_path / "images")
    assert len(data) == 3
    first = data.item(0)
    assert first.turns == [
        ("<image>\nWhat is in the image?", "A red square."),
        ("Where is it?", "On the left."),
    ]
    assert first.image_paths == [tmp_path / "images" / "000001.jpg"] and first.video_path is None
    assert data.item(1).turns[0][0] == "Compare <image> and <image>."  # kept; the builder places slots
    assert len(data.item(1).image_paths) == 2
    assert data.item(2).video_path == tmp_path / "images" / "clip"


def test_instruction_json_drops_a_leading_assistant_message(tmp_path):
    path = tmp_path / "data.json"
    messages = [("gpt", "Hello."), ("human", "<image>\nWhat?"), ("gpt", "A cat.")]
    path.write_text(
        json.dumps([{"image": "x.jpg", "conversations": [{"from": f, "value": v} for f, v in messages]}])
    )
    assert InstructionDataset(path).item(0).turns == [("<image>\nWhat?", "A cat.")]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"conversations": []}, "expected a non-empty JSON list"),
        ([{"id": 7, "conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "q"}]}],
         r"entry 0 \(id 7\): turns 0,1 are from 'human','human'"),
        ([{"conversations": [{"from": "human", "value": "q"}]}], "must hold human/gpt pairs"),
        ([{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": " "}]}],
         "empty answer"),
        ([{"image": 3, "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}],
         "'image' must be a file name"),
    ],
)  # fmt: skip
def test_instruction_json_errors(tmp_path, entries, message):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(entries))
    with pytest.raises(DatasetFormatError, match=message):
        InstructionDataset(path)
