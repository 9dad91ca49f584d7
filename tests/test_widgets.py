"""The explorer runs the library's pipeline and keeps its pictures in step with the slider."""

import numpy as np
import pytest

from visa_lib.data.revos import load_revos
from visa_lib.data.video import write_video_frames
from visa_lib.paths import REASONVOS_LITE
from visa_lib.pipeline import build_pipeline, run_on_video
from visa_lib.widgets import Explorer, answer_histogram


@pytest.fixture(scope="module")
def explorer():
    return Explorer(build_pipeline("toy"), video="skimage/valid_astronaut_0000")


def test_explorer_shows_what_run_on_video_returns(explorer, tmp_path):
    split = explorer.split
    frames = np.stack(list(split.iter_frames("skimage/valid_astronaut_0000"))[:8])
    folder = write_video_frames(tmp_path / "clip", frames)
    explorer.path_box.value = str(folder)
    assert explorer.slider.max == 7 and explorer.frame_label.value == "frame 0 of 8"
    assert "8 frames" in explorer.status.value

    result = explorer.run("which object appears last?")
    assert result.answers and result.tp is not None  # the sampler chose the frame
    expected = run_on_video(
        explorer.frames,
        "which object appears last?",
        explorer.pipeline,
        target_frame=result.target_frame,
        progress=False,
    )
    assert (result.masks == expected.masks).all() and (result.target_mask == expected.target_mask).all()
    assert f"target frame {result.target_frame} of 8" in explorer.status.value
    assert explorer.slider.value == result.target_frame
    assert explorer.histogram.value[:4] == b"\x89PNG" and explorer.target_image.value[:4] == b"\x89PNG"

    picture = explorer.frame_image.value
    other = (result.target_frame + 1) % 8
    explorer.slider.value = other
    assert explorer.frame_label.value.startswith(f"frame {other} of 8")
    assert explorer.frame_image.value != picture


def test_explorer_reports_bad_input_in_its_status(explorer):
    explorer.path_box.value = "/no/such/video.mp4"
    assert "cannot read" in explorer.status.value and "no such file" in explorer.status.value
    explorer.path_box.value = ""
    explorer.query.value = "  "
    assert explorer.run() is None and "type a query" in explorer.status.value
    with pytest.raises(ValueError, match="not in split"):
        Explorer(explorer.pipeline, video="nope")


def test_answer_histogram_counts_parsed_answers():
    fig = answer_histogram(["50%", "It is 50%.", "90%", "no idea"], 0.63, 20, 12)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights[5] == 2 and heights[9] == 1 and sum(heights) == 3
    assert "1 unparsable" in ax.get_xlabel()


def test_bundled_split_is_the_default():
    assert load_revos(REASONVOS_LITE, "valid").videos.keys() == Explorer(pipeline=None).split.videos.keys()
