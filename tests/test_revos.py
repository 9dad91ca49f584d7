"""ReVOS / MeViS / Ref-DAVIS17 formats: writer -> loader round trips, merging, and every validation error."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_VIDEOS

from visa_lib.data.formats import (
    davis17_expression_order,
    load_davis17,
    load_mevis,
    write_davis17_split,
    write_mevis_split,
)
from visa_lib.data.revos import (
    DatasetFormatError,
    Expression,
    VideoMeta,
    load_revos,
    write_revos_split,
)
from visa_lib.data.rle import encode_rle


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# --------------------------------------------------------------------------------------------- round trip


def test_round_trip_metadata(tiny_revos, tiny_revos_split):
    split = tiny_revos_split
    assert list(split.videos) == [name for name, *_ in TINY_VIDEOS]
    video = split.videos["TAO/seq_a"]
    assert (video.height, video.width, len(video.frames)) == (24, 32, 5)
    assert video.frames == ["00000", "00001", "00002", "00003", "00004"]
    exp = video.expressions["1"]
    assert exp == Expression("1", "which squares could be stacked?", [0, 1], [1, 2], 1)
    assert [(v, e.exp_id) for v, e in split.expressions()] == [
        ("TAO/seq_a", "0"), ("TAO/seq_a", "1"), ("TAO/seq_a", "2"), ("MOSE/seq_b", "0"), ("MOSE/seq_b", "1"),
    ]  # fmt: skip
    assert split.num_expressions == 5
    # video names with "/" become nested folders
    assert split.frame_path("TAO/seq_a", 2) == tiny_revos / "JPEGImages" / "TAO" / "seq_a" / "00002.jpg"
    assert split.frame_path("TAO/seq_a", "00002") == split.frame_path("TAO/seq_a", 2)


def test_gt_is_sum_over_anno_ids_and_foreground_is_union(tiny_revos):
    split = load_revos(tiny_revos)
    single = split.gt_masks("TAO/seq_a", "0")
    both = split.gt_masks("TAO/seq_a", "1")
    assert single.dtype == np.uint8 and single.shape == (5, 24, 32)
    assert set(np.unique(single)) == {0, 1}
    assert set(np.unique(both)) == {0, 1, 2}  # overlap of anno 1 and 2 sums to 2 (VISA's evaluator)
    other = both - single
    assert set(np.unique(other)) == {0, 1}
    np.testing.assert_array_equal(split.foreground_masks("TAO/seq_a"), (both > 0).astype(np.uint8))
    # the no-target expression is all zeros; slices decode only the asked frames
    assert not split.gt_masks("TAO/seq_a", "2").any()
    np.testing.assert_array_equal(split.gt_masks("TAO/seq_a", "1", slice(1, 3)), both[1:3])
    # anno 3 is absent in frame 0 (null RLE) -> zeros there
    seq_b = split.gt_masks("MOSE/seq_b", "0")
    assert not seq_b[0].any() and seq_b[1:].all(axis=(1, 2)).sum() == 0 and seq_b[1].sum() == 36
    raw = json.loads((tiny_revos / "mask_dict.json").read_text())
    assert raw["3"][0] is None


def test_foreground_json_matches_and_fallback(tiny_revos):
    split = load_revos(tiny_revos)
    fg_file = json.loads((tiny_revos / "mask_dict_foreground.json").read_text())
    entry = fg_file["TAO/seq_a"]
    union = split.foreground_masks("TAO/seq_a")
    assert entry["foreground_ratio"] == pytest.approx(union.mean(axis=(1, 2)), abs=1e-6)
    (tiny_revos / "mask_dict_foreground.json").unlink()
    computed = load_revos(tiny_revos).foreground_masks("TAO/seq_a")
    np.testing.assert_array_equal(computed, union)


def test_frames_read_streamed_rgb(tiny_revos):
    split = load_revos(tiny_revos)
    frames = list(split.iter_frames("MOSE/seq_b"))
    assert len(frames) == 4 and frames[0].shape == (20, 28, 3) and frames[0].dtype == np.uint8
    # the object was painted red (220, 40, 40): RGB order survives JPEG + cv2 reading
    inside = frames[2][split.gt_masks("MOSE/seq_b", "0")[2] > 0]
    assert inside[:, 0].mean() > 150 and inside[:, 2].mean() < 100


def test_meta_without_trailing_underscore(tiny_revos):
    (tiny_revos / "meta_expressions_valid_.json").rename(tiny_revos / "meta_expressions_valid.json")
    assert load_revos(tiny_revos).num_expressions == 5


def test_merge_train_and_valid_into_one_root(tiny_revos):
    mask = np.zeros((2, 6, 8), bool)
    mask[:, 1:3, 1:4] = True
    video = VideoMeta("UVO/train_vid", ["a", "b"], {"0": Expression("0", "a box", [0], [10], 0)}, 6, 8)
    write_revos_split(tiny_revos, "train", [video], {10: mask})
    train, valid = load_revos(tiny_revos, "train"), load_revos(tiny_revos, "valid")
    np.testing.assert_array_equal(train.gt_masks("UVO/train_vid", "0"), mask.astype(np.uint8))
    assert valid.num_expressions == 5  # the earlier split's masks are still there
    masks = json.loads((tiny_revos / "mask_dict.json").read_text())
    assert set(masks) == {"1", "2", "3", "10"}
    # writing the same content again is fine; a different mask under an existing anno_id is not
    write_revos_split(tiny_revos, "train", [video], {10: mask})
    with pytest.raises(ValueError, match="anno_id 10 already exists with different content"):
        write_revos_split(tiny_revos, "train", [video], {10: ~mask})


def test_writer_rejects_bad_input(tmp_path):
    video = VideoMeta("v", ["0", "1"], {"0": Expression("0", "x", [0], [1], 0)}, 4, 5)
    with pytest.raises(ValueError, match="anno_id 1 has no mask"):
        write_revos_split(tmp_path, "valid", [video], {})
    with pytest.raises(ValueError, match=r"anno_masks\[1\]: shape \[2, 5, 4\]"):
        write_revos_split(tmp_path, "valid", [video], {1: np.zeros((2, 5, 4), bool)})
    with pytest.raises(ValueError, match="1 frames given, 2 listed"):
        write_revos_split(tmp_path, "valid", [video], {1: np.zeros((2, 4, 5), bool)},
                          {"v": [np.zeros((4, 5, 3), np.uint8)]})  # fmt: skip
    bad_name = VideoMeta("../escape", ["0"], {}, 4, 5)
    with pytest.raises(ValueError, match="relative path"):
        write_revos_split(tmp_path, "valid", [bad_name], {})


# ------------------------------------------------------------------------------------------- validation


def test_malformed_json_names_line_and_column(tiny_revos):
    path = tiny_revos / "meta_expressions_valid_.json"
    path.write_text('{"videos": {\n  "a": [1, 2,, 3]}}')
    message = r"meta_expressions_valid_\.json: malformed JSON at line 2, column"
    with pytest.raises(DatasetFormatError, match=message):
        load_revos(tiny_revos)


def test_missing_files(tmp_path, tiny_revos):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_revos(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="check --split"):
        load_revos(tiny_revos, "test")
    (tiny_revos / "mask_dict.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"mask_dict\.json: file not found"):
        load_revos(tiny_revos)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("videos"), "missing top-level key 'videos'"),
        (lambda d: d["videos"]["TAO/seq_a"].pop("height"),
         r"video 'TAO/seq_a': missing key\(s\) \['height'\]"),
        (lambda d: d["videos"]["TAO/seq_a"]["expressions"]["1"].pop("anno_id"),
         r"expression '1': missing key\(s\) \['anno_id'\]"),
        (lambda d: d["videos"]["TAO/seq_a"]["expressions"]["0"].update(type_id=3),
         "type_id 3 is not one of 0"),
        (lambda d: d["videos"]["MOSE/seq_b"]["expressions"]["0"].update(anno_id=[99]),
         r"references anno_id 99, which is missing from .*mask_dict\.json"),
        (lambda d: d["videos"]["MOSE/seq_b"].update(height=21),
         r"anno_id 3 frame 1: RLE size \[20, 28\] differs from video 'MOSE/seq_b' \(21x28\)"),
        (lambda d: d["videos"]["MOSE/seq_b"]["frames"].append("00004"),
         "anno_id 3 has 4 frames, video 'MOSE/seq_b' has 5"),
        (lambda d: d["videos"]["MOSE/seq_b"].update(frames="00000"), "'frames' must be a non-empty list"),
        (lambda d: d["videos"]["MOSE/seq_b"].update(width="wide"), "height/width must be integers"),
    ],
    ids=["videos", "height", "anno_id", "type_id", "unknown_anno", "rle_size", "num_frames", "frames",
         "width"],
)
def test_meta_validation_errors(tiny_revos, edit, message):
    _edit_json(tiny_revos / "meta_expressions_valid_.json", edit)
    with pytest.raises(DatasetFormatError, match=message):
        load_revos(tiny_revos)


def test_mask_dict_validation_errors(tiny_revos):
    path = tiny_revos / "mask_dict.json"
    _edit_json(path, lambda d: d["1"].pop())
    with pytest.raises(DatasetFormatError, match="anno_id 1 has 4 frames, video 'TAO/seq_a' has 5"):
        load_revos(tiny_revos)
    _edit_json(path, lambda d: d["1"].append(encode_rle(np.zeros((24, 31), bool))))
    with pytest.raises(DatasetFormatError, match=r"anno_id 1 frame 4: RLE size \[24, 31\]"):
        load_revos(tiny_revos)


def test_foreground_validation_error(tiny_revos):
    _edit_json(tiny_revos / "mask_dict_foreground.json", lambda d: d["TAO/seq_a"]["masks_rle"].pop())
    message = "mask_dict_foreground.json: video 'TAO/seq_a' has 4 foreground"
    with pytest.raises(DatasetFormatError, match=message):
        load_revos(tiny_revos)


def test_missing_frames_lazily_or_eagerly(tiny_revos):
    missing = tiny_revos / "JPEGImages" / "MOSE" / "seq_b" / "00003.jpg"
    missing.unlink()
    split = load_revos(tiny_revos)  # lazy: loading works
    assert split.read_frame("MOSE/seq_b", 2).shape == (20, 28, 3)
    with pytest.raises(FileNotFoundError, match=r"00003\.jpg: frame 3 of video 'MOSE/seq_b' is missing"):
        split.read_frame("MOSE/seq_b", 3)
    with pytest.raises(DatasetFormatError, match=r"1 frame file\(s\) missing, first: .*00003\.jpg"):
        load_revos(tiny_revos, check_frames=True)


# ---------------------------------------------------------------------------------------- MeViS, DAVIS17


def _two_videos() -> tuple[list[VideoMeta], dict[int, np.ndarray]]:
    rng = np.random.default_rng(3)
    masks = {k: rng.random((3, 6, 9)) < 0.3 for k in (5, 6)}
    masks[7] = np.zeros((2, 8, 4), bool)  # an object never visible
    videos = [
        VideoMeta("vid_b", ["0", "1", "2"], {
            "0": Expression("0", "single", [0], [5]),
            "1": Expression("1", "both", [0, 1], [5, 6]),
        }, 6, 9),
        VideoMeta("vid_a", ["0", "1"], {"0": Expression("0", "ghost", [0], [7])}, 8, 4),
    ]  # fmt: skip
    return videos, masks


def test_mevis_round_trip(tmp_path):
    videos, masks = _two_videos()
    frames = {"vid_a": [np.zeros((8, 4, 3), np.uint8)] * 2}
    folder = write_mevis_split(tmp_path, "valid_u", videos, masks, frames)
    meta = json.loads((folder / "meta_expressions.json").read_text())
    assert "type_id" not in meta["videos"]["vid_b"]["expressions"]["0"]
    for root in (tmp_path, folder):  # the MeViS folder or the split folder itself
        split = load_mevis(root, "valid_u")
        assert (split.videos["vid_b"].height, split.videos["vid_b"].width) == (6, 9)
        assert (split.videos["vid_a"].height, split.videos["vid_a"].width) == (8, 4)
        assert {e.type_id for _, e in split.expressions()} == {0}
        expected = masks[5].astype(np.uint8) + masks[6]
        np.testing.assert_array_equal(split.gt_masks("vid_b", "1"), expected)
    with pytest.raises(FileNotFoundError, match="no meta_expressions.json"):
        load_mevis(tmp_path, "valid")
    (folder / "mask_dict.json").unlink()
    with pytest.raises(FileNotFoundError, match="evaluate on 'valid_u' instead"):
        load_mevis(folder)


def test_mevis_size_unknown_without_frames(tmp_path):
    videos, masks = _two_videos()
    folder = write_mevis_split(tmp_path, "valid_u", videos, masks)
    _edit_json(folder / "mask_dict.json", lambda d: d.update({"7": [None, None]}))
    with pytest.raises(DatasetFormatError, match="the size of video 'vid_a' is unknown"):
        load_mevis(tmp_path)


def test_davis17_running_index_string_sorted(tmp_path):
    names = [str(i) for i in range(12)]  # "10" and "11" sort between "1" and "2"
    video_z = VideoMeta("zebra", ["00000", "00001"], {n: Expression(n, f"e{n}") for n in names}, 5, 6)
    video_a = VideoMeta("ant", ["00000"], {"0": Expression("0", "the ant")}, 4, 4)
    order = davis17_expression_order({"zebra": video_z, "ant": video_a})
    assert order[:4] == [("ant", "0"), ("zebra", "0"), ("zebra", "1"), ("zebra", "10")]
    rng = np.random.default_rng(5)
    masks = {("zebra", n): rng.random((2, 5, 6)) < 0.5 for n in names}
    masks[("ant", "0")] = np.ones((1, 4, 4), bool)
    for fmt in ("pkl", "json"):
        folder = write_davis17_split(tmp_path / fmt, "valid", [video_z, video_a], masks, fmt=fmt)
        split = load_davis17(folder.parent, "valid")
        assert split.videos["zebra"].expressions["10"].anno_ids == [3]
        for name in names:
            expected = masks[("zebra", name)].astype(np.uint8)
            np.testing.assert_array_equal(split.gt_masks("zebra", name), expected)
    with open(tmp_path / "pkl" / "valid" / "mask_dict.pkl", "rb") as fh:
        stored = pickle.load(fh)
    assert len(stored["3"]) == 2


def test_davis17_validation(tmp_path):
    video = VideoMeta("v", ["0", "1"], {"0": Expression("0", "x"), "1": Expression("1", "y")}, 4, 4)
    masks = {("v", "0"): np.ones((2, 4, 4), bool), ("v", "1"): np.zeros((2, 4, 4), bool)}
    folder = write_davis17_split(tmp_path, "valid", [video], masks, fmt="json")
    _edit_json(folder / "mask_dict.json", lambda d: d.pop("1"))
    with pytest.raises(DatasetFormatError, match="references anno_id 1, which is missing"):
        load_davis17(tmp_path)
    (folder / "mask_dict.json").unlink()
    with pytest.raises(FileNotFoundError, match="neither mask_dict.json nor mask_dict.pkl"):
        load_davis17(tmp_path)
    (folder / "mask_dict.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DatasetFormatError, match="not a readable pickle"):
        load_davis17(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_rle_counts_are_a_dataset_error_naming_the_annotation(tiny_revos, damage):
    def edit(d):
        rle = d["3"][2]
        rle["counts"] = rle["counts"][:-2] if damage == "truncate" else "\x01garbage;;"

    _edit_json(tiny_revos / "mask_dict.json", edit)
    message = r"mask_dict.json: anno_id 3 \(video 'MOSE/seq_b' expression '0'\) frame 2: corrupt RLE"
    with pytest.raises(DatasetFormatError, match=message):
        load_revos(tiny_revos)
