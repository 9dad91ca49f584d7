"""The ``visa`` command line end to end: JSON/CSV output, exit code 2 with a clear message on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pytest
from dataset_fixtures import OpensFile

from visa_lib import cli
from visa_lib.data.formats import write_mevis_split
from visa_lib.data.revos import Expression, VideoMeta, load_revos
from visa_lib.evaluate import write_predictions


@pytest.fixture
def revos_preds(tiny_revos, tmp_path):
    """Perfect predictions for every expression except MOSE/seq_b/1 (missing -> one failure)."""
    split = load_revos(tiny_revos)
    pred_dir = tmp_path / "pred"
    for video, exp in split.expressions():
        if (video, exp.exp_id) != ("MOSE/seq_b", "1"):
            gt = split.gt_masks(video, exp.exp_id)
            write_predictions(pred_dir, video, exp.exp_id, split.videos[video].frames, gt)
    return tiny_revos, pred_dir


def test_eval_revos_end_to_end(revos_preds, tmp_path, capsys):
    root, pred_dir = revos_preds
    out, table = tmp_path / "res/scores.json", tmp_path / "res/scores.csv"
    argv = ["eval", "revos", str(pred_dir), "--data-root", str(root), "--out", str(out), "--csv", str(table)]
    code = cli.main([*argv, "--workers", "1", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "| overall | 4 |" in printed and "MOSE/seq_b / 1: missing folder" in printed
    data = json.loads(out.read_text())
    for key in ("referring", "reasoning", "overall", "no_target"):
        assert set(data[key]) == {"J", "F", "J&F", "A", "R"}
    # referring: 100 and 100; reasoning: 100 and 0 (missing) -> 50; overall = mean of the two = 75
    assert data["referring"]["J"] == 100.0 and data["reasoning"]["J"] == 50.0 and data["overall"]["J"] == 75.0
    assert data["failures"] == [
        {"video": "MOSE/seq_b", "exp_id": "1", "reason": f"missing folder {pred_dir / 'MOSE/seq_b/1'}"}
    ]
    assert len(table.read_text().strip().splitlines()) == 1 + 5
    binary_out = tmp_path / "binary.json"
    assert cli.main([*argv[:5], "--out", str(binary_out), "--mode", "binary", "--quiet"]) == 0
    assert json.loads(binary_out.read_text())["mode"] == "binary"


def test_eval_mevis(tmp_path, capsys):
    mask = np.zeros((2, 4, 5), bool)
    mask[:, 1:3, 1:3] = True
    video = VideoMeta("clip", ["00000", "00001"], {"0": Expression("0", "box", [0], [1])}, 4, 5)
    write_mevis_split(tmp_path / "mevis", "valid_u", [video], {1: mask})
    write_predictions(tmp_path / "pred", "clip", "0", video.frames, mask)
    out = tmp_path / "m.json"
    data_root = str(tmp_path / "mevis")
    argv = ["eval", "mevis", str(tmp_path / "pred"), "--data-root", data_root, "--out", str(out)]
    assert cli.main([*argv, "--quiet"]) == 0
    assert json.loads(out.read_text())["J&F"] == 100.0
    assert "| mevis/valid_u | 1 | 100.00 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "revos", "{tmp}/missing", "--data-root", "{root}"],
         "PRED_DIR {tmp}/missing is not a folder"),
        (["eval", "revos", "{pred}", "--data-root", "{tmp}/nowhere"],
         "--data-root {tmp}/nowhere is not a folder"),
        (["eval", "revos", "{pred}", "--data-root", "{root}", "--split", "test"], "check --split"),
        (["eval", "revos", "{pred}", "--data-root", "{root}", "--workers", "0"], "--workers must be >= 1"),
        (["eval", "davis17", "{pred}", "--data-root", "{root}"], "no meta_expressions.json"),
    ],
    ids=["pred_dir", "data_root", "split", "workers", "davis_layout"],
)
def test_bad_input_exit_code_2(revos_preds, tmp_path, capsys, argv, message):
    root, pred_dir = revos_preds
    fill = {"tmp": str(tmp_path), "root": str(root), "pred": str(pred_dir)}
    code = cli.main([a.format(**fill) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message.format(**fill) in err and err.startswith("visa eval: error:")
    assert "Traceback" not in err


def test_malformed_dataset_exit_code_2(revos_preds, capsys):
    root, pred_dir = revos_preds
    (root / "mask_dict.json").write_text("{oops")
    assert cli.main(["eval", "revos", str(pred_dir), "--data-root", str(root)]) == 2
    assert "mask_dict.json: malformed JSON at line 1, column 2" in capsys.readouterr().err


def test_usage_errors_and_help(capsys):
    assert cli.main([]) == 2
    assert cli.main(["eval", "revos"]) == 2
    assert cli.main(["eval", "revos", "p", "--data-root", "r", "--mode", "clean"]) == 2
    assert "invalid choice: 'clean'" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    assert "eval" in capsys.readouterr().out


def test_plugin_commands_are_lazy(monkeypatch, capsys):
    monkeypatch.setitem(cli.PLUGIN_COMMANDS, "demo", ("visa_lib._no_such_demo", "demo"))
    assert cli.main(["demo"]) == 2
    assert "module visa_lib._no_such_demo is not installed" in capsys.readouterr().err
    fake = types.ModuleType("visa_lib._fake_plugin")
    seen = {}
    fake.add_arguments = lambda parser: parser.add_argument("--frames", type=int, default=3)

    def fake_main(args):
        seen["frames"] = args.frames
        return 0

    fake.main = fake_main
    monkeypatch.setitem(sys.modules, "visa_lib._fake_plugin", fake)
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setitem(cli.PLUGIN_COMMANDS, "demo", ("visa_lib._fake_plugin", "demo"))
    assert cli.main(["demo", "--frames", "7"]) == 0
    assert seen == {"frames": 7}

    def failing_main(args):
        raise FileNotFoundError("video.mp4: not found; pass --video")

    fake.main = failing_main
    assert cli.main(["demo"]) == 2
    assert "visa demo: error: video.mp4: not found; pass --video" in capsys.readouterr().err


def test_console_module_runs():
    """``python -m visa_lib.cli`` is wired to main (exit code 2 without a subcommand)."""
    proc = subprocess.run([sys.executable, "-m", "visa_lib.cli"], capture_output=True, text=True)
    assert proc.returncode == 2 and "required" in proc.stderr


def test_eval_davis17_refuses_a_doctored_mask_dict_pkl_and_runs_nothing(tmp_path):
    """The whole CLI in a fresh process: one line, exit code 2, and the payload never executed."""
    import pickle

    from visa_lib.data.formats import write_davis17_split

    mask = np.zeros((2, 4, 5), bool)
    video = VideoMeta("clip", ["00000", "00001"], {"0": Expression("0", "box", [0], [1])}, 4, 5)
    folder = write_davis17_split(tmp_path / "davis", "valid", [video], {("clip", "0"): mask})
    write_predictions(tmp_path / "pred", "clip", "0", video.frames, mask)
    marker = tmp_path / "pwned"
    (folder / "mask_dict.pkl").write_bytes(pickle.dumps({"0": [OpensFile(marker), None]}))
    argv = ["eval", "davis17", str(tmp_path / "pred"), "--data-root", str(tmp_path / "davis"), "--quiet"]
    proc = subprocess.run([sys.executable, "-m", "visa_lib.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("visa eval: error:") and "mask_dict.pkl" in proc.stderr
    assert "not plain data" in proc.stderr
    assert not marker.exists() and proc.stdout == ""


def test_eval_revos_refuses_a_truncated_gt_rle_before_scoring(revos_preds, capsys, monkeypatch):
    import visa_lib.evaluate

    root, pred_dir = revos_preds
    data = json.loads((root / "mask_dict.json").read_text())
    data["1"][1]["counts"] = data["1"][1]["counts"][:-1]
    (root / "mask_dict.json").write_text(json.dumps(data))

    def no_scoring(*args, **kwargs):
        raise AssertionError("scoring started on a damaged ground truth")

    monkeypatch.setattr(visa_lib.evaluate, "_run", no_scoring)
    assert cli.main(["eval", "revos", str(pred_dir), "--data-root", str(root), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "mask_dict.json: anno_id 1 (video 'TAO/seq_a' expression '0') frame 1: corrupt RLE" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
