"""Prediction PNGs: the same values as cv2.imread grayscale (fast path or not), and the files VISA's reader
changes silently (16-bit, JPEG bytes in .png, values other than 0/255) scored as VISA scores them and listed;
prediction folders the split does not know are listed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from visa_lib.evaluate import evaluate_revos, write_predictions
from visa_lib.prediction_png import read_prediction_png


def _masks(seed: int, count: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        h, w = (int(v) for v in rng.integers(1, 160, 2))
        mask = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(0, 4))):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
            cv2.ellipse(mask, centre, axes, 0, 0, 360, int(rng.choice([255, 255, 1, 128])), -1)
        if k % 4 == 0:
            mask = (rng.random((h, w)) < 0.5).astype(np.uint8) * 255  # noise: every row busy
        out.append(mask)
    return out


@pytest.mark.parametrize("writer", ["cv2", "pil", "cv2_16bit", "jpeg_bytes", "pil_palette"])
def test_values_are_exactly_cv2_grayscale_whatever_the_file(tmp_path, writer):
    for k, mask in enumerate(_masks(len(writer))):
        path = tmp_path / f"{k}.png"
        if writer == "cv2":
            cv2.imwrite(str(path), mask)
        elif writer == "pil":
            Image.fromarray(mask).save(path)
        elif writer == "pil_palette":
            Image.fromarray(mask).convert("P").save(path)
        elif writer == "cv2_16bit":
            cv2.imwrite(str(path), mask.astype(np.uint16))
        else:
            path.write_bytes(cv2.imencode(".jpg", mask)[1].tobytes())
        image, note = read_prediction_png(path)
        np.testing.assert_array_equal(image, cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
        if writer == "cv2_16bit":
            assert note.startswith("16-bit PNG")
        elif writer == "jpeg_bytes":
            assert note.startswith("JPEG data in a .png file")
        elif set(np.unique(mask).tolist()) <= {0, 255}:
            assert note is None
        else:
            assert note.startswith("values other than 0 and 255")


def test_files_that_visa_reads_changed_are_scored_as_visa_and_listed(tiny_revos, tmp_path):
    from visa_lib.data.revos import load_revos

    split = load_revos(tiny_revos)
    pred = tmp_path / "pred"
    for video, exp in split.expressions():
        gt = split.gt_masks(video, exp.exp_id)
        write_predictions(pred, video, exp.exp_id, split.videos[video].frames, gt)
    clean = evaluate_revos(pred, tiny_revos, workers=1, progress=False)
    assert not clean.notes and not clean.unknown and not clean.failures

    a_frames = split.videos["TAO/seq_a"].frames
    gt0 = split.gt_masks("TAO/seq_a", "0") > 0
    cv2.imwrite(str(pred / "TAO/seq_a/0" / f"{a_frames[1]}.png"), gt0[1].astype(np.uint16) * 255)  # 16-bit
    jpeg = cv2.imencode(".jpg", gt0[2].astype(np.uint8) * 255)[1].tobytes()
    (pred / "TAO/seq_b" / "9").mkdir(parents=True)
    (pred / "TAO/seq_b/9/00000.png").write_bytes(jpeg)  # a video the split does not know
    (pred / "MOSE/seq_b/7").mkdir()
    cv2.imwrite(str(pred / "MOSE/seq_b/7/00000.png"), gt0[0].astype(np.uint8) * 255)  # unknown expression
    b_frames = split.videos["MOSE/seq_b"].frames
    gt_b = split.gt_masks("MOSE/seq_b", "0") > 0
    jpeg_b = cv2.imencode(".jpg", gt_b[3] * np.uint8(255))[1].tobytes()
    (pred / "MOSE/seq_b/0" / f"{b_frames[3]}.png").write_bytes(jpeg_b)
    cv2.imwrite(str(pred / "MOSE/seq_b/1" / f"{b_frames[2]}.png"), gt_b[2].astype(np.uint8))  # a 0/1 mask
    (pred / ".predict").mkdir()
    (pred / ".predict/00000.png").write_bytes(jpeg)  # bookkeeping folders are not predictions

    result = evaluate_revos(pred, tiny_revos, workers=1, progress=False)
    notes = {(n.video, n.exp_id): n.reason for n in result.notes}
    assert set(notes) == {("TAO/seq_a", "0"), ("MOSE/seq_b", "0"), ("MOSE/seq_b", "1")}
    assert f"{a_frames[1]}.png: 16-bit PNG" in notes[("TAO/seq_a", "0")]
    assert "JPEG data in a .png file" in notes[("MOSE/seq_b", "0")]
    assert "values other than 0 and 255" in notes[("MOSE/seq_b", "1")]
    assert result.unknown == ["MOSE/seq_b/7", "TAO/seq_b/9"]
    table = result.table()
    assert "MOSE/seq_b/7" in table and "16-bit PNG" in table
    assert result.as_dict()["unknown_prediction_folders"] == ["MOSE/seq_b/7", "TAO/seq_b/9"]
    # VISA's reader turns the 16-bit frame into an empty mask: J of that frame is 0 (scored, not failed)
    scores = {(s.video, s.exp_id): s.values for s in result.scores}
    assert scores[("TAO/seq_a", "0")]["J"] == pytest.approx(100 * 4 / 5) and not result.failures
