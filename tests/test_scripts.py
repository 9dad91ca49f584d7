"""Smoke runs of the scripts that rebuild the shipped toy VISA weights and its ceiling (a few steps each)."""

import importlib.util

import pytest

from visa_lib.paths import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_toy_visa_writes_weights_that_build_visa_loads(tmp_path):
    from visa_lib.model.build import build_visa
    from visa_lib.model.checkpoints import read_visa_weights_metadata

    out = tmp_path / "visa.safetensors"
    args = [
        "--train-videos",
        "0",
        "--warmup-steps",
        "2",
        "--steps",
        "2",
        "--warmup-answer",
        "query",
        "--eval-items",
        "2",
        "--eval-train-items",
        "0",
        "--out",
        str(out),
    ]
    result = load_script("train_toy_visa").main(args)
    assert result["steps"] == 2 and result["valid_items"] == 2
    assert 0 <= result["valid_iou_trained"]["all"] <= 1
    assert read_visa_weights_metadata(out)["extra"]["warmup_steps"] == 2
    model = build_visa("toy", weights=out, check_trained=False)
    assert model.seg_token_id == len(model.tokenizer) - 1


def test_oracle_class_prompts_scores_valid_and_train(tmp_path):
    result = load_script("oracle_class_prompts").main(["--train-videos", "1", "--steps", "2"])
    assert result["valid_iou"]["items"] == 95  # every valid expression with a target
    assert 0 <= result["valid_iou"]["all"] <= 1 and 0 <= result["train_iou"]["all"] <= 1
