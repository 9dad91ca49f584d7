"""The pipeline decomposition: oracle frames, target-frame IoU, and the ground-truth rows end to end."""

import numpy as np
import pytest

from visa_lib.decomposition import largest_target_frame, mask_iou, write_decomposition

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_largest_target_frame_and_no_target(tiny_revos_split):
    split = tiny_revos_split
    # anno 3 is absent in frame 0 of seq_b and equally large afterwards: argmax picks frame 1
    assert largest_target_frame(split, "MOSE/seq_b", "0") == 1
    assert largest_target_frame(split, "TAO/seq_a", "2") is None  # no target
    areas = split.gt_masks("TAO/seq_a", "1").reshape(5, -1).sum(1)
    assert largest_target_frame(split, "TAO/seq_a", "1") == int(areas.argmax())


def test_mask_iou_counts_an_empty_answer_to_no_target_as_right():
    a = np.zeros((4, 4), dtype=bool)
    assert mask_iou(a, a) == 1.0
    b = a.copy()
    b[:2] = True
    assert mask_iou(b, a) == 0.0
    c = a.copy()
    c[:1] = True
    assert mask_iou(c, b) == 0.5


def test_ground_truth_rows_are_exact_on_the_target_frame(tiny_revos_split, tmp_path):
    from visa_lib.pipeline import build_pipeline

    pipeline = build_pipeline("toy", sampler="first_frame")
    scores = write_decomposition(tiny_revos_split, pipeline, tmp_path, rows=("oracle:gt",), progress=False)
    assert [s.iou for s in scores["oracle:gt"]] == [1.0] * 5
    assert sorted(p.name for p in (tmp_path / "oracle:gt").iterdir()) == ["MOSE", "TAO"]
    with pytest.raises(ValueError, match="unknown rows"):
        write_decomposition(tiny_revos_split, pipeline, tmp_path, rows=("gt:gt",))


def test_iou_by_kind_groups_no_target_queries_and_sorts_by_count():
    from visa_lib.decomposition import NO_TARGET_KIND, format_kind_table, iou_by_kind
    from visa_lib.train.revos_samples import TargetFrameScore

    scores = [
        TargetFrameScore("v", "0", "the cat", 0, 3, 0.5),
        TargetFrameScore("v", "1", "what is on the left?", 0, 3, 0.2),
        TargetFrameScore("v", "2", "the red cat", 0, 3, 0.9),
        TargetFrameScore("v", "3", "the dog", 2, 3, 1.0),
    ]
    kinds = {("v", "0"): "name", ("v", "1"): "position", ("v", "2"): "name", ("v", "3"): "name"}
    table = iou_by_kind(scores, kinds)
    assert list(table) == ["name", NO_TARGET_KIND, "position"]
    assert table["name"] == {"count": 2, "iou": pytest.approx(0.7)}
    assert table[NO_TARGET_KIND] == {"count": 1, "iou": 1.0}
    text = format_kind_table({"tfs:visa": table, "oracle:visa": {"name": table["name"]}})
    assert "| name | 2 | 0.700 | 0.700 |" in text and "| position | 1 | 0.200 | - |" in text
