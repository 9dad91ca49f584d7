"""End to end: VideoFrames, run_on_video (sampler -> VISA -> XMem) with the shipped toy models, visa infer."""

import json

import numpy as np
import pytest
import torch

from visa_lib.data.revos import load_revos
from visa_lib.data.video import VideoFrames, write_video_frames
from visa_lib.metrics import jaccard
from visa_lib.paths import REASONVOS_LITE
from visa_lib.pipeline import build_pipeline, run_on_video, write_split_predictions
from visa_lib.tfs import aggregate, target_frame

#: A validation video and query the shipped toy VISA gets right at its largest-target frame (13).
VIDEO, QUERY, TARGET = "skimage/valid_circle_0001", "which shape has no corners?", 13


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is fastest


@pytest.fixture(scope="module")
def valid():
    return load_revos(REASONVOS_LITE, "valid")


@pytest.fixture(scope="module")
def clip(valid):
    """Frames uint8 [T,H,W,3] and the GT masks bool [T,H,W] of QUERY."""
    meta = valid.videos[VIDEO]
    exp_id = next(k for k, e in meta.expressions.items() if e.text == QUERY)
    frames = np.stack([valid.read_frame(VIDEO, t) for t in range(len(meta.frames))])
    return frames, valid.gt_masks(VIDEO, exp_id) > 0


@pytest.fixture(scope="module")
def pipeline():
    return build_pipeline("toy")


# ---------------------------------------------------------------------------------------------- VideoFrames
def test_video_folder_is_read_lazily_and_in_name_order(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (5, 24, 32, 3), dtype=np.uint8)
    frames[:] = frames[:, :1, :1]  # flat colours survive JPEG
    write_video_frames(tmp_path, frames)
    video = VideoFrames(tmp_path)
    assert len(video) == 5 and (video.height, video.width) == (24, 32)
    assert np.abs(video[2].astype(int) - frames[2]).max() <= 3
    assert np.abs(video[-1].astype(int) - frames[4]).max() <= 3
    assert video[1:4].shape == (3, 24, 32, 3)
    with pytest.raises(IndexError, match="outside the 5 frames"):
        video[5]


def test_video_file_frames_are_decoded_on_demand(tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for t in range(7):
        writer.write(np.full((24, 32, 3), 30 * t, np.uint8))
    writer.release()
    video = VideoFrames(path)
    assert len(video) == 7 and video[0].shape == (24, 32, 3)
    assert [round(video[t].mean() / 30) for t in (5, 2, 3)] == [5, 2, 3]  # seeks backwards too


def test_bad_videos_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        VideoFrames(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no frames"):
        VideoFrames(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="unknown suffix"):
        VideoFrames(tmp_path / "notes.txt")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="broken.mp4"):
        VideoFrames(tmp_path / "broken.mp4")
    mixed = tmp_path / "mixed"
    write_video_frames(mixed, np.zeros((2, 24, 32, 3), np.uint8))
    from PIL import Image

    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(mixed / "00002.jpg")
    with pytest.raises(ValueError, match="every frame must have one size"):
        VideoFrames(mixed)[2]


# ---------------------------------------------------------------------------------------------- run_on_video
def test_given_target_frame_is_segmented_and_tracked_through_the_video(clip, pipeline):
    frames, gt = clip
    result = run_on_video(frames, QUERY, pipeline, target_frame=TARGET, progress=False)
    assert result.target_frame == TARGET and result.tp is None and result.answers == []
    assert result.masks.shape == gt.shape and result.masks.dtype == bool
    assert TARGET in result.reference_frames and len(result.reference_frames) <= 11
    assert jaccard(result.target_mask, gt[TARGET]) > 0.7
    visible = gt.reshape(len(gt), -1).any(1)
    assert np.mean(jaccard(result.masks[visible], gt[visible])) > 0.5  # XMem carried it to other frames
    assert result.masks[:TARGET].any() and result.masks[TARGET + 1 :].any()  # tracked both ways


def test_the_sampler_picks_the_target_frame_by_visa_rule(clip, pipeline):
    frames, _ = clip
    results = run_on_video(frames, [QUERY, "the cat at the bottom"], pipeline, progress=False)
    assert [r.text for r in results] == [QUERY, "the cat at the bottom"]
    for r in results:
        assert len(r.answers) == pipeline.sampler.num_answers
        assert r.tp == aggregate(r.answers) and r.target_frame == target_frame(r.tp, len(frames))
    assert not np.array_equal(results[0].masks, results[1].masks)  # the text decides what is segmented


def test_an_empty_target_mask_means_no_target_and_xmem_is_not_run(clip, pipeline, monkeypatch):
    import visa_lib.pipeline as pipeline_module

    frames, _ = clip
    monkeypatch.setattr(
        pipeline.model, "segment", lambda refs, target, texts: torch.full((len(texts), 240, 320), -1.0)
    )
    monkeypatch.setattr(
        pipeline_module, "track_both_ways", lambda *a, **k: pytest.fail("XMem ran on an empty mask")
    )
    result = run_on_video(frames, QUERY, pipeline, target_frame=3, progress=False)
    assert not result.found and result.masks.shape == (len(frames), 240, 320) and not result.masks.any()


def test_run_on_video_rejects_bad_input(clip, pipeline):
    frames, _ = clip
    with pytest.raises(ValueError, match="non-empty text"):
        run_on_video(frames, "  ", pipeline)
    with pytest.raises(ValueError, match="uint8"):
        run_on_video(frames.astype(np.float32), QUERY, pipeline)
    with pytest.raises(ValueError, match="outside the video's 32 frames"):
        run_on_video(frames, QUERY, pipeline, target_frame=32)
    no_sampler = build_pipeline("toy", sampler=None)
    with pytest.raises(ValueError, match="no frame sampler"):
        run_on_video(frames, QUERY, no_sampler)


def test_split_predictions_are_written_for_every_frame_and_scored(tmp_path, valid, pipeline):
    from visa_lib.evaluate import evaluate_revos

    pred = write_split_predictions(valid, pipeline, tmp_path / "pred", videos=[VIDEO], progress=False)
    meta = valid.videos[VIDEO]
    for exp_id in meta.expressions:
        assert len(list((pred / VIDEO / exp_id).glob("*.png"))) == len(meta.frames)
    log = json.loads((pred / "target_frames.json").read_text())
    assert set(log) == {f"{VIDEO}/{e}" for e in meta.expressions}
    result = evaluate_revos(pred, REASONVOS_LITE, "valid", workers=1, progress=False)
    scored = {s.exp_id for s in result.scores if s.video == VIDEO and not s.failure}
    assert scored == set(meta.expressions)


# ---------------------------------------------------------------------------------------------- visa infer
def test_visa_infer_writes_masks_gif_and_summary(tmp_path, clip, capsys):
    from visa_lib.cli import main

    frames, gt = clip
    folder = write_video_frames(tmp_path / "video", frames[:12])
    code = main(
        [
            "infer",
            "--video",
            str(folder),
            "--text",
            QUERY,
            "--target-frame",
            "11",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    (query,) = summary["queries"]
    assert query["target_frame"] == 11 and query["text"] == QUERY
    masks = sorted((tmp_path / "out" / "00_which_shape_has_no_corners" / "masks").glob("*.png"))
    assert len(masks) == 12 and (tmp_path / "out" / "00_which_shape_has_no_corners" / "overlay.gif").is_file()
    assert "target frame 11" in capsys.readouterr().out


def test_visa_infer_bad_input_is_one_line_without_traceback(tmp_path, capsys):
    from visa_lib.cli import main

    assert main(["infer", "--video", str(tmp_path / "nope"), "--text", "the cat"]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "v").mkdir()
    assert main(["infer", "--video", str(tmp_path / "v"), "--text", "the cat"]) == 2
    assert "--video" in capsys.readouterr().err
    assert main(["infer", "--video", str(tmp_path / "v"), "--text", " "]) == 2
    assert "query is empty" in capsys.readouterr().err


def test_full_rung_never_falls_back_to_toy_parts(tmp_path, clip, capsys):
    """chatunivi-7b: the toy sampler, the toy XMem and a missing CLIP / SAM are refused, naming the fix."""
    from visa_lib.cli import main
    from visa_lib.model.build import build_visa

    with pytest.raises(ValueError, match="sampler='uniform'"):
        build_pipeline("chatunivi-7b")
    with pytest.raises(ValueError, match="xmem_weights= the official XMem.pth"):
        build_pipeline("chatunivi-7b", sampler="uniform")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    with pytest.raises(ValueError, match="weights= the Chat-UniVi folder"):
        build_visa("chatunivi-7b", weights=None)
    with pytest.raises(FileNotFoundError):  # an empty folder is no checkpoint
        build_visa("chatunivi-7b", weights=folder)
    frames_dir = tmp_path / "frames"
    write_video_frames(frames_dir, clip[0][:3])
    argv = ["infer", "--video", str(frames_dir), "--text", "the cat", "--config", "chatunivi-7b"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--sampler" in err and "Traceback" not in err
    assert main([*argv, "--sampler", "uniform"]) == 2
    assert "--xmem-weights" in capsys.readouterr().err


def test_demo_scores_the_toy_visa_pipeline_next_to_the_baselines(tmp_path, capsys):
    from visa_lib.cli import main
    from visa_lib.data.reasonvos_lite.generator import generate_split

    generate_split(tmp_path / "data", "valid", seed=5, num_videos=1, progress=False)
    assert (
        main(
            ["demo", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "demo"), "--workers", "1"]
        )
        == 0
    )
    scores = json.loads((tmp_path / "demo" / "scores.json").read_text())
    assert list(scores)[0] == "toy_visa" and "all_empty" in scores
    assert 0 <= scores["toy_visa"]["overall"]["J&F"] <= 100
    assert (tmp_path / "demo" / "demo.png").is_file()
    assert "| toy_visa |" in capsys.readouterr().out
