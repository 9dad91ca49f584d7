"""visa predict: same masks as run_on_video, resumable, two real worker processes, tp files, bad videos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visa_lib.cli import main as visa
from visa_lib.data.reasonvos_lite.generator import generate_split
from visa_lib.data.revos import load_revos
from visa_lib.data.video import SplitVideoFrames
from visa_lib.evaluate import evaluate_revos
from visa_lib.pipeline import build_pipeline, run_on_video, write_split_predictions
from visa_lib.predict import RECORDS, TARGET_FRAMES, load_queries, predict_split
from visa_lib.tfs import target_frame
from visa_lib.tfs.tp_file import TpFileSampler, read_tp_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    """A freshly generated ReasonVOS-lite split: 3 short videos (not the bundled data)."""
    root = tmp_path_factory.mktemp("lite")
    generate_split(root, "valid", seed=7, num_videos=3, frames_min=8, frames_max=10, progress=False)
    return root


@pytest.fixture(scope="module")
def pipeline():
    return build_pipeline("toy")


@pytest.fixture(scope="module")
def predicted(tiny_split, tmp_path_factory):
    """``visa predict`` with two worker processes (spawned, each builds its own toy pipeline)."""
    out = tmp_path_factory.mktemp("pred") / "p"
    code = visa(
        ["predict", "revos", "--data-root", str(tiny_split), "--out", str(out), "--workers", "2", "--quiet"]
    )
    assert code == 0
    return out


def _read(folder, frames):
    return np.stack([np.asarray(Image.open(folder / f"{f}.png")) for f in frames])


def test_predict_writes_what_run_on_video_returns(tiny_split, predicted, pipeline):
    split = load_revos(tiny_split, "valid")
    log = json.loads((predicted / TARGET_FRAMES).read_text())
    assert len(log) == split.num_expressions
    for video, meta in split.videos.items():
        exp_ids = list(meta.expressions)
        results = run_on_video(
            SplitVideoFrames(split, video),
            [meta.expressions[e].text for e in exp_ids],
            pipeline,
            progress=False,
        )
        for exp_id, result in zip(exp_ids, results, strict=True):
            pngs = _read(predicted / video / exp_id, meta.frames)
            assert set(np.unique(pngs)) <= {0, 255}
            np.testing.assert_array_equal(pngs > 0, result.masks)
            entry = log[f"{video}/{exp_id}"]
            assert entry["target_frame"] == result.target_frame and entry["tp"] == result.tp
            assert entry["answers"] == result.answers and entry["found"] == result.found


def test_predict_under_a_distributed_launch_splits_videos_between_processes(tiny_split, predicted, tmp_path):
    """Two processes started like ``accelerate launch`` does (torchrun, gloo on the CPU) share the videos."""
    import os
    import subprocess
    import sys

    out = tmp_path / "p"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "visa_lib.cli"]
    command += ["predict", "revos", "--data-root", str(tiny_split), "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run(command, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    split = load_queries("revos", tiny_split, "valid")
    assert f"{split.num_expressions} expressions predicted" in run.stdout  # the main process sums the shares
    assert json.loads((out / TARGET_FRAMES).read_text()) == json.loads(
        (predicted / TARGET_FRAMES).read_text()
    )
    for video, meta in split.videos.items():
        for exp_id in meta.expressions:
            np.testing.assert_array_equal(
                _read(out / video / exp_id, meta.frames), _read(predicted / video / exp_id, meta.frames)
            )


def test_predict_then_eval_equals_the_demo_path(tiny_split, predicted, pipeline, tmp_path):
    split = load_revos(tiny_split, "valid")
    write_split_predictions(split, pipeline, tmp_path / "demo", progress=False)  # what `visa demo` runs
    by_predict = evaluate_revos(predicted, tiny_split, "valid", workers=1, progress=False).summary()
    by_demo = evaluate_revos(tmp_path / "demo", tiny_split, "valid", workers=1, progress=False).summary()
    assert by_predict == by_demo
    assert by_predict["overall"]["J&F"] is not None


def test_predict_resumes_and_redoes_half_written_expressions(tiny_split, predicted, tmp_path):
    out = tmp_path / "p"
    shutil.copytree(predicted, out)
    split = load_queries("revos", tiny_split, "valid")
    video = next(iter(split.videos))
    before = _read(out / video / "0", split.videos[video].frames)
    # Interrupted mid-expression: its record is gone and only some PNGs are there.
    (out / RECORDS / video / "0.json").unlink()
    for png in list((out / video / "0").glob("*.png"))[3:]:
        png.unlink()
    (out / video / ".1.partial").mkdir()  # a temporary folder left by the interruption
    report = predict_split(split, out, pipeline_spec={}, workers=1, progress=False)
    assert report.predicted == 1 and report.skipped == split.num_expressions - 1 and not report.failed
    np.testing.assert_array_equal(_read(out / video / "0", split.videos[video].frames), before)
    # Nothing left to do: no model is loaded (a spec that cannot be built is never built).
    again = predict_split(split, out, pipeline_spec={"name": "not-a-config"}, workers=1, progress=False)
    assert again.predicted == 0 and again.skipped == split.num_expressions


def test_an_unreadable_video_is_listed_and_the_rest_predicted(tiny_split, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(tiny_split, root)
    split = load_queries("revos", root, "valid")
    broken, *others = list(split.videos)
    (root / "JPEGImages" / broken / f"{split.videos[broken].frames[2]}.jpg").write_bytes(b"not a jpeg")
    code = visa(
        ["predict", "revos", "--data-root", str(root), "--out", str(tmp_path / "p"), "--workers", "1"]
    )
    out = capsys.readouterr().out
    assert code == 1 and "could not be read" in out and broken in out
    assert all((tmp_path / "p" / v / e).is_dir() for v in others for e in split.videos[v].expressions)
    assert not (tmp_path / "p" / broken).exists()


def _visa_tp_file(split, path, skip: int = 0):
    """VISA's published format: the meta file with a ``tp`` per expression (minus the last ``skip``)."""
    meta = json.loads(split.meta_path.read_text())
    keys = [(v, e) for v, video in meta["videos"].items() for e in video["expressions"]]
    for k, (v, e) in enumerate(keys[: len(keys) - skip]):
        meta["videos"][v]["expressions"][e]["tp"] = [0.0, 0.35, 1.0, 0.61][k % 4]
    path.write_text(json.dumps(meta))
    return path


def test_tp_file_sets_the_target_frame_by_visa_rule(tiny_split, tmp_path):
    split = load_queries("revos", tiny_split, "valid")
    tp_file = _visa_tp_file(split, tmp_path / "meta_expressions_valid__llamavid.json")
    out = tmp_path / "p"
    args = ["predict", "revos", "--data-root", str(tiny_split), "--out", str(out), "--workers", "1"]
    assert visa([*args, "--tp-file", str(tp_file), "--quiet"]) == 0
    tps = read_tp_file(tp_file)
    log = json.loads((out / TARGET_FRAMES).read_text())
    for video, meta in split.videos.items():
        for exp_id in meta.expressions:
            tp = tps[f"{video}/{exp_id}"]
            entry = log[f"{video}/{exp_id}"]
            assert entry["tp"] == tp and entry["answers"] == []
            assert entry["target_frame"] == target_frame(tp, len(meta.frames))  # int(N * tp), clamped
    assert {e["target_frame"] for e in log.values()} >= {0}
    # Our own target_frames.json is a tp file too: the same decisions come back.
    again = TpFileSampler(out / TARGET_FRAMES)
    assert again.tps == tps


def test_tp_file_missing_expressions_are_one_error_naming_them(tiny_split, tmp_path, capsys):
    split = load_queries("revos", tiny_split, "valid")
    tp_file = _visa_tp_file(split, tmp_path / "partial.json", skip=2)
    args = ["predict", "revos", "--data-root", str(tiny_split), "--out", str(tmp_path / "p")]
    assert visa([*args, "--tp-file", str(tp_file), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    last_video = list(split.videos)[-1]
    missing = list(split.videos[last_video].expressions)[-2:]
    assert "2 expression(s) have no 'tp'" in err and all(f"{last_video}/{e}" in err for e in missing)
    assert not (tmp_path / "p" / last_video).exists()  # nothing was predicted
    (tmp_path / "bad.json").write_text(json.dumps({"a/0": {"tp": 1.7}}))
    assert visa([*args, "--tp-file", str(tmp_path / "bad.json")]) == 2
    assert "'tp' in [0, 1]" in capsys.readouterr().err
    with pytest.raises(ValueError, match="keys="):
        TpFileSampler(tp_file).choose(np.zeros((4, 8, 8, 3), np.uint8), ["the cat"])


def test_model_options_are_visa_infers_and_tp_file_excludes_sampler(tiny_split, tmp_path, capsys):
    import argparse

    from visa_lib.predict import add_arguments, pipeline_spec

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["revos", "--data-root", str(tiny_split), "--out", str(tmp_path / "p")]
    (tmp_path / "clip").mkdir()  # the paths are checked before any model loads
    (tmp_path / "XMem.pth").write_bytes(b"")
    (tmp_path / "sam.pth").write_bytes(b"")
    args = parser.parse_args(
        [
            *base,
            "--config",
            "chatunivi-7b",
            "--clip-weights",
            str(tmp_path / "clip"),
            "--xmem-weights",
            str(tmp_path / "XMem.pth"),
            "--sam-weights",
            str(tmp_path / "sam.pth"),
            "--dtype",
            "bfloat16",
            "--load-in-4bit",
        ]
    )
    spec = pipeline_spec(args)
    assert spec["name"] == "chatunivi-7b" and spec["sampler"] == "toy"
    assert spec["xmem_weights"].name == "XMem.pth" and spec["sam_weights"].name == "sam.pth"
    assert spec["clip_weights"].name == "clip" and spec["dtype"] == "bfloat16" and spec["load_in_4bit"]
    assert pipeline_spec(parser.parse_args([*base, "--tp-file", "f.json"]))["sampler"] == "tpfile:f.json"
    assert visa(["predict", *base, "--tp-file", "f.json", "--sampler", "uniform"]) == 2
    assert "not both" in capsys.readouterr().err
    assert visa(["predict", *base, "--xmem-weights", str(tmp_path / "missing.pth")]) == 2
    assert "--xmem-weights" in capsys.readouterr().err


def test_a_pipeline_the_workers_cannot_build_is_one_error_not_a_hang(tiny_split, tmp_path, capsys):
    """On the full rung the toy sampler is refused inside each worker; the refusal reaches the caller."""
    split = load_queries("revos", tiny_split, "valid")
    with pytest.raises(ValueError, match="toy frame sampler"):
        predict_split(
            split, tmp_path / "p", pipeline_spec={"name": "chatunivi-7b"}, workers=2, progress=False
        )
    args = ["predict", "revos", "--data-root", str(tiny_split), "--out", str(tmp_path / "p")]
    assert visa([*args, "--config", "chatunivi-7b", "--workers", "2", "--quiet"]) == 2
    assert "--sampler" in capsys.readouterr().err


def test_read_predictions_gives_back_what_was_written(tmp_path):
    from visa_lib.evaluate import PredictionError, read_predictions, write_predictions

    masks = np.random.default_rng(0).random((3, 6, 7)) > 0.5
    write_predictions(tmp_path, "src/video", "4", ["a", "b", "c"], masks)
    np.testing.assert_array_equal(read_predictions(tmp_path, "src/video", "4", ["a", "b", "c"]), masks)
    with pytest.raises(PredictionError, match="missing frame"):
        read_predictions(tmp_path, "src/video", "4", ["a", "z"])


def test_ctrl_c_while_overwrite_swaps_an_expression_keeps_the_old_result(
    tiny_split, predicted, tmp_path, monkeypatch
):
    import os

    from visa_lib import paths
    from visa_lib.predict import pending_expressions

    out = tmp_path / "p"
    shutil.copytree(predicted, out)
    split = load_queries("revos", tiny_split, "valid")
    video = next(iter(split.videos))
    marker = out / video / "0" / "earlier.png"  # tells the earlier result from a new one
    marker.write_bytes(b"earlier run")
    real_replace = os.replace

    def replace_but_interrupt_the_new_folder(src, dst):
        if Path(src).name == ".0.partial":  # the old folder is aside, the new one not yet in
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(paths.os, "replace", replace_but_interrupt_the_new_folder)
    with pytest.raises(KeyboardInterrupt):
        predict_split(split, out, pipeline_spec={}, workers=1, progress=False, resume=False)
    monkeypatch.undo()
    # The next run puts the earlier result back; having lost its record, it is predicted again.
    assert "0" in pending_expressions(split, video, out)
    assert marker.read_bytes() == b"earlier run" and not list((out / video).glob(".*"))
