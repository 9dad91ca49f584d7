"""visa infer: masks streamed to disk, whole query folders, refuse / --resume / --overwrite, arguments
checked before any model loads, and peak memory that does not grow with the video."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from visa_lib.cli import main
from visa_lib.data.revos import load_revos
from visa_lib.data.video import write_video_frames
from visa_lib.evaluate import read_mask_png
from visa_lib.paths import REASONVOS_LITE

#: A validation video and query the shipped toy VISA gets right at frame 13 (as in test_pipeline).
VIDEO, QUERY = "skimage/valid_circle_0001", "which shape has no corners?"
FOLDER = "00_which_shape_has_no_corners"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A 12-frame folder of the validation video."""
    split = load_revos(REASONVOS_LITE, "valid")
    frames = np.stack([split.read_frame(VIDEO, t) for t in range(12)])
    return write_video_frames(tmp_path_factory.mktemp("video") / "clip", frames)


def _infer(video: Path, out: Path, *extra: str) -> int:
    argv = ["infer", "--video", str(video), "--text", QUERY, "--target-frame", "11", "--out", str(out)]
    return main([*argv, "--overlay", "none", *extra])


def test_masks_equal_run_on_video_and_the_folder_is_whole(video, tmp_path):
    from visa_lib.pipeline import build_pipeline, run_on_video

    assert _infer(video, tmp_path / "out") == 0
    folder = tmp_path / "out" / FOLDER
    written = np.stack([read_mask_png(p) > 0 for p in sorted((folder / "masks").glob("*.png"))])
    pipeline = build_pipeline("toy", sampler=None)
    expected = run_on_video(video, QUERY, pipeline, target_frame=11, progress=False)
    np.testing.assert_array_equal(written, expected.masks)
    query = json.loads((folder / "query.json").read_text())
    assert query["frames_with_object"] == [int(t) for t in np.flatnonzero(expected.masks.any((1, 2)))]
    assert not list((tmp_path / "out").glob(".*partial"))


def test_a_folder_with_results_is_refused_resumed_or_replaced_never_mixed(video, tmp_path, capsys):
    out = tmp_path / "out"
    assert _infer(video, out) == 0
    masks = out / FOLDER / "masks"
    stale = masks / "99999.png"
    stale.write_bytes((masks / "00000.png").read_bytes())  # a mask no run of this video writes
    (out / f".{FOLDER}.partial").mkdir()  # what Ctrl-C in the middle of a query leaves
    capsys.readouterr()

    assert _infer(video, out) == 2
    err = capsys.readouterr().err
    assert FOLDER in err and "--resume" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert stale.exists()  # refused: nothing touched

    assert _infer(video, out, "--resume") == 0
    assert stale.exists() and "resuming: 1" in capsys.readouterr().out
    assert not (out / f".{FOLDER}.partial").exists()  # the interrupted query's leftovers are gone

    assert _infer(video, out, "--overwrite") == 0
    assert not stale.exists() and len(list(masks.glob("*.png"))) == 12
    (query,) = json.loads((out / "summary.json").read_text())["queries"]
    assert query["target_frame"] == 11


def test_overlay_is_encoded_frame_by_frame_as_mp4(video, tmp_path):
    import av

    argv = ["infer", "--video", str(video), "--text", QUERY, "--target-frame", "11"]
    assert main([*argv, "--out", str(tmp_path / "out"), "--overlay", "mp4"]) == 0
    with av.open(str(tmp_path / "out" / FOLDER / "overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 12


@pytest.mark.parametrize(
    "case, message",
    [
        ("device_name", "--device 'gpu9': not a device"),
        ("device_cuda", "PyTorch sees no CUDA GPU"),
        ("device_tpu", "is not supported"),
        ("weights_pth", "not a .safetensors file"),
        ("weights_broken", "not a readable .safetensors file"),
        ("weights_missing", "no such file or folder"),
        ("out_file", "is a file, not a folder"),
        ("out_under_file", "cannot write there"),
        ("target_frame", "--target-frame 40: the video has 12 frames"),
        ("xmem_size", "--xmem-size 3"),
    ],
)
def test_bad_arguments_are_one_line_exit_2_before_any_model_loads(
    video, tmp_path, monkeypatch, capsys, case, message
):
    import torch

    import visa_lib.pipeline

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built before the arguments were checked")

    monkeypatch.setattr(visa_lib.pipeline, "build_pipeline", no_model)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "model.pth").write_bytes(b"\x80\x04pickled")
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    out = tmp_path / "out"
    extra = {
        "device_name": ["--device", "gpu9"],
        "device_cuda": ["--device", "cuda"],
        "device_tpu": ["--device", "xla"],
        "weights_pth": ["--weights", str(tmp_path / "model.pth")],
        "weights_broken": ["--weights", str(tmp_path / "broken.safetensors")],
        "weights_missing": ["--weights", str(tmp_path / "nope.safetensors")],
        "out_file": [],
        "out_under_file": [],
        "target_frame": ["--target-frame", "40"],
        "xmem_size": ["--xmem-size", "3"],
    }[case]
    if case == "out_file":
        out = tmp_path / "a_file"
    elif case == "out_under_file":
        out = tmp_path / "a_file" / "results"
    argv = ["infer", "--video", str(video), "--text", QUERY, "--out", str(out), *extra]
    if "--target-frame" not in extra:
        argv += ["--target-frame", "11"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------------------ memory

_PEAK_CHILD = """
import sys, tracemalloc
import numpy as np
from visa_lib.cli import main
from visa_lib.data.video import VideoFrames
import visa_lib.data.video, visa_lib.evaluate, visa_lib.infer, visa_lib.pipeline, visa_lib.viz  # imports
tracemalloc.start()
code = main(sys.argv[1:])
print("PEAK", tracemalloc.get_traced_memory()[1])
sys.exit(code)
"""


def _peak_bytes(video: Path, out: Path) -> int:
    """Peak of Python and numpy allocations (tracemalloc) of ``visa infer`` in a fresh process."""
    argv = ["infer", "--video", str(video), "--text", QUERY, "--target-frame", "5", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_CHILD, *argv, "--overlay", "gif", "--xmem-size", "48"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    masks = list((out / FOLDER / "masks").glob("*.png"))
    assert len(masks) == len(list(video.iterdir()))
    return int(next(x for x in proc.stdout.splitlines() if x.startswith("PEAK")).split()[1])


def test_peak_memory_does_not_grow_with_the_number_of_frames(tmp_path):
    """10x the frames, at most 1.25x the peak (numpy frames, masks and overlay all count)."""
    split = load_revos(REASONVOS_LITE, "valid")
    cycle = [split.read_frame(VIDEO, t) for t in range(len(split.videos[VIDEO].frames))]
    cycle += cycle[-2:0:-1]  # forwards then backwards, so long clips keep moving
    peaks = {}
    for count in (22, 220):  # both long enough for VISA's 11 reference frames
        frames = np.stack([cycle[t % len(cycle)] for t in range(count)])
        peaks[count] = _peak_bytes(write_video_frames(tmp_path / f"v{count}", frames), tmp_path / f"o{count}")
    # Holding every mask alone would add 220 x 320 x 240 bool = 17 MB (the peak at 22 frames is ~13 MB).
    assert peaks[220] <= 1.25 * peaks[22], peaks


def test_ctrl_c_right_after_the_partial_folder_is_made_leaves_nothing(tmp_path, monkeypatch):
    from visa_lib import infer

    real_mkdir = Path.mkdir

    def mkdir_then_interrupt(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)
        if self.name == "masks":
            raise KeyboardInterrupt

    monkeypatch.setattr(Path, "mkdir", mkdir_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        infer._write_query(tmp_path, "00_query", None, None, None, "none")
    assert not list(tmp_path.iterdir())


def test_ctrl_c_while_overwrite_swaps_the_folders_keeps_the_old_result(video, tmp_path, monkeypatch):
    import os

    from visa_lib import paths

    out = tmp_path / "out"
    assert _infer(video, out) == 0
    marker = out / FOLDER / "masks" / "99999.png"  # tells the earlier result from a new one
    marker.write_bytes(b"earlier run")
    real_replace = os.replace

    def replace_but_interrupt_the_new_folder(src, dst):
        if Path(src).name.endswith(".partial"):  # the old folder is aside, the new one not yet in
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(paths.os, "replace", replace_but_interrupt_the_new_folder)
    assert _infer(video, out, "--overwrite") == 130
    monkeypatch.undo()
    assert _infer(video, out, "--resume") == 0  # put back whole and counted as finished
    assert marker.read_bytes() == b"earlier run" and not list(out.glob(".*"))
