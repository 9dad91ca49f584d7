"""Ctrl-C (SIGINT to a real subprocess) in visa infer, visa predict and visa eval: every finished result
stays on disk, nothing half-written is left, and a re-run resumes or redoes cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from visa_lib.data.revos import load_revos
from visa_lib.data.video import write_video_frames
from visa_lib.paths import REASONVOS_LITE

VIDEO, QUERY = "skimage/valid_circle_0001", "which shape has no corners?"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def _interrupt_when(
    argv: list[str], ready: Callable[[], bool], child: str | None = None
) -> subprocess.CompletedProcess:
    """Run ``visa ARGV`` in a fresh process group and, as soon as ``ready()``, send SIGINT to the whole
    group (what Ctrl-C in a terminal does, worker processes included)."""
    code = child or "import sys; from visa_lib.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    while not ready():
        assert proc.poll() is None, f"finished before it could be interrupted: {proc.communicate()}"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    code = "import sys; from visa_lib.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], env=ENV, capture_output=True, text=True)


def test_ctrl_c_in_visa_infer_keeps_finished_queries_and_resume_finishes(tmp_path):
    split = load_revos(REASONVOS_LITE, "valid")
    frames = [split.read_frame(VIDEO, t) for t in range(len(split.videos[VIDEO].frames))]
    clip = write_video_frames(tmp_path / "clip", np.stack((frames + frames[::-1]) * 2))  # 128 frames
    out = tmp_path / "out"
    argv = ["infer", "--video", str(clip), "--text", QUERY, "--text", "the square", "--target-frame", "13"]
    argv += ["--out", str(out), "--overlay", "none"]
    first = out / "00_which_shape_has_no_corners"
    interrupted = _interrupt_when(argv, lambda: (first / "query.json").is_file())
    assert interrupted.returncode == 130 and "interrupted" in interrupted.stderr
    assert len(list((first / "masks").glob("*.png"))) == 128  # the finished query is whole
    assert not (out / "01_the_square").exists()  # the unfinished one left nothing behind ...
    assert not list(out.glob(".*.partial"))  # ... not even its temporary folder
    (query,) = json.loads((out / "summary.json").read_text())["queries"]
    assert query["text"] == QUERY

    resumed = _run([*argv, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming: 1" in resumed.stdout
    queries = json.loads((out / "summary.json").read_text())["queries"]
    assert [q["text"] for q in queries] == [QUERY, "the square"]
    assert len(list((out / "01_the_square" / "masks").glob("*.png"))) == 128


def test_ctrl_c_in_visa_predict_keeps_finished_expressions_and_a_rerun_resumes(tmp_path):
    from visa_lib.data.reasonvos_lite.generator import generate_split

    root = tmp_path / "data"
    generate_split(root, "valid", seed=3, num_videos=3, progress=False)
    split = load_revos(root, "valid")
    out = tmp_path / "pred"
    argv = ["predict", "revos", "--data-root", str(root), "--out", str(out), "--workers", "1", "--quiet"]
    records = out / ".predict"

    def some_done() -> bool:
        return records.is_dir() and any(records.rglob("*.json"))

    interrupted = _interrupt_when(argv, some_done)
    assert interrupted.returncode == 130, interrupted.stderr
    done = {(p.parent.relative_to(records).as_posix(), p.stem) for p in records.rglob("*.json")}
    assert 0 < len(done) < split.num_expressions
    for video, exp_id in done:  # every recorded expression has all its masks
        assert len(list((out / video / exp_id).glob("*.png"))) == len(split.videos[video].frames)
    assert not list(out.rglob(".*.partial"))

    rerun = _run(argv)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(records.rglob("*.json"))) == split.num_expressions
    evaluated = _run(["eval", "revos", str(out), "--data-root", str(root), "--workers", "1", "--quiet"])
    assert evaluated.returncode == 0 and "scored 0" not in evaluated.stdout


_SLOW_EVAL = """
import sys, time
from pathlib import Path
import visa_lib.metrics as metrics
from visa_lib.cli import main
original = metrics.f_measure
def slow(*args, **kwargs):
    Path(sys.argv[-1]).touch()  # the marker: scoring has started
    time.sleep(0.5)
    return original(*args, **kwargs)
metrics.f_measure = slow
sys.exit(main(sys.argv[1:-1]))
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_in_visa_eval_leaves_earlier_results_whole_and_a_rerun_redoes(tiny_revos, tmp_path, workers):
    from visa_lib.evaluate import write_predictions

    split = load_revos(tiny_revos)
    pred = tmp_path / "pred"
    for video, exp in split.expressions():
        gt = split.gt_masks(video, exp.exp_id)
        write_predictions(pred, video, exp.exp_id, split.videos[video].frames, gt)
    results = tmp_path / "results"
    out, table = results / "scores.json", results / "scores.csv"
    argv = ["eval", "revos", str(pred), "--data-root", str(tiny_revos), "--out", str(out)]
    argv += ["--csv", str(table), "--workers", workers, "--quiet"]
    assert _run(argv).returncode == 0
    before = out.read_bytes(), table.read_bytes()

    marker = tmp_path / "started"
    interrupted = _interrupt_when([*argv, str(marker)], marker.exists, child=_SLOW_EVAL)
    assert interrupted.returncode == 130 and "interrupted" in interrupted.stderr
    assert (out.read_bytes(), table.read_bytes()) == before  # the earlier results, whole
    assert sorted(p.name for p in results.iterdir()) == ["scores.csv", "scores.json"]  # no temporary files

    out.unlink()
    rerun = _run(argv)
    assert rerun.returncode == 0 and json.loads(out.read_text())["overall"]["J"] == 100.0
