"""Smoke runs of the scripts that rebuild the shipped toy VISA weights and its ceiling (a few steps each)."""

import importlib.util
import sys

import pytest

from visa_lib.model.vision import TOY_CLIP_WEIGHTS
from visa_lib.paths import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses defined in the script look their module up
    spec.loader.exec_module(module)
    return module


def test_train_toy_visa_writes_weights_that_build_visa_loads(tmp_path):
    from visa_lib.model.build import build_visa
    from visa_lib.model.checkpoints import read_visa_weights_metadata

    out = tmp_path / "visa.safetensors"
    args = [
        "--clip-checkpoint",
        str(TOY_CLIP_WEIGHTS),
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
    assert read_visa_weights_metadata(out)["extra"]["clip_checkpoint"] == str(TOY_CLIP_WEIGHTS)
    model = build_visa("toy", weights=out, check_trained=False)
    assert model.seg_token_id == len(model.tokenizer) - 1


@pytest.mark.parametrize("where", [False, True])
def test_oracle_class_prompts_scores_valid_and_train(where):
    extra = ["--where"] if where else []
    result = load_script("oracle_class_prompts").main(["--train-videos", "1", "--steps", "2", *extra])
    assert result["where"] is where
    assert result["valid_iou"]["items"] == 95  # every valid expression with a target
    assert 0 <= result["valid_iou"]["all"] <= 1 and 0 <= result["train_iou"]["all"] <= 1
    by_target = result["valid_by_target"]
    assert by_target["unique"]["count"] + by_target["twinned"]["count"] == 95
    assert sum(k["count"] for k in result["valid_by_kind"].values()) == 95
    # told where the target is, the shipped SAM segments it far better than a 2-step name prompt
    assert result["valid_click_iou"] > 0.7 > result["valid_iou"]["all"]


@pytest.mark.parametrize("code", ["fourier", "fourier-aligned"])
def test_oracle_prompt_with_sams_click_code_localises_untrained(code):
    args = ["--train-videos", "1", "--steps", "2", "--where", "--where-code", code]
    result = load_script("oracle_class_prompts").main(args)
    assert result["where_code"] == code
    # SAM's own click code at the target's centroid, added to a random name vector: no training needed
    assert result["valid_iou"]["all"] > 0.5


def test_train_toy_clip_position_probe_reads_positions_not_noise():
    import torch

    clip_script = load_script("train_toy_clip")
    where = clip_script.patch_positions(16)  # a 4 x 4 grid
    assert where.shape == (1, 16, 2)
    assert where[0, 0].tolist() == [-1.0, -1.0] and where[0, 3].tolist() == [1.0, -1.0]
    assert where[0, -1].tolist() == [1.0, 1.0]
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(8, 16, 4, generator=generator)
    assert clip_script.position_r2(noise) < 0.3
    tokens = torch.cat([where.expand(8, -1, -1), noise], -1)  # position linearly in the tokens
    assert clip_script.position_r2(tokens) == pytest.approx(1.0)


def test_train_toy_clip_trains_the_position_objective():
    _tower, summary = load_script("train_toy_clip").train(2, 2, 1e-3, 0, position_weight=1.0, progress=False)
    assert summary["position_weight"] == 1.0 and summary["heldout_position_r2"] <= 1.0


def test_sam_click_codes_are_what_sam_encodes_for_a_click_at_each_patch_centre():
    import torch
    from segment_anything.utils.transforms import ResizeLongestSide

    from visa_lib.model.sam import TOY_SAM_WEIGHTS, build_sam

    clip_script = load_script("train_toy_clip")
    codes = clip_script.sam_click_codes(TOY_SAM_WEIGHTS)
    assert codes.shape == (1, 256, 64)
    sam = build_sam("toy", checkpoint=TOY_SAM_WEIGHTS)
    h, w = clip_script.FRAME_HW
    # patch (row 3, column 10): centre at crop pixel (147, 49); the crop drops (298 - 224) / 2 columns
    frame_xy = torch.tensor([[[(147 + 37) * w / 298, 49 * h / 224]]])
    coords = ResizeLongestSide(sam.image_encoder.img_size).apply_coords_torch(frame_xy, (h, w))
    with torch.no_grad():
        click = sam.prompt_encoder._embed_points(coords - 0.5, torch.ones(1, 1), pad=False)
    expected = click[0, 0] - sam.prompt_encoder.point_embeddings[1].weight[0]
    assert torch.allclose(codes[0, 3 * 16 + 10], expected, atol=1e-5)


def test_train_toy_clip_regresses_given_position_targets():
    import torch

    targets = torch.randn(1, 256, 6, generator=torch.Generator().manual_seed(0))
    clip_script = load_script("train_toy_clip")
    _tower, summary = clip_script.train(
        2, 2, 1e-3, 0, position_weight=1.0, progress=False, position_targets=targets
    )
    assert summary["heldout_position_target_r2"] < 1.0
    assert clip_script.Heads(128, 1.0, targets).position.out_features == 6


def test_oracle_click_token_is_sams_click_embedding():
    import torch

    from visa_lib.model.sam import TOY_SAM_WEIGHTS, build_sam

    oracle = load_script("oracle_class_prompts")
    sam = build_sam("toy", checkpoint=TOY_SAM_WEIGHTS)
    resized = (192, 256)
    token = oracle.click_token(sam, torch.tensor([0.5, -0.5]), resized)  # 3/4 across, 1/4 down
    with torch.no_grad():
        points = torch.tensor([[[192.0 - 0.5, 48.0 - 0.5]]])  # SAM adds half a pixel
        expected = sam.prompt_encoder._embed_points(points, torch.ones(1, 1), pad=False)[0]
    assert torch.allclose(token, expected, atol=1e-5)


def test_oracle_target_centroid_is_scaled_to_the_frame():
    import numpy as np

    from visa_lib.model.sam import mask_centroid as centroid

    mask = np.zeros((5, 9), bool)
    mask[0, 0] = mask[4, 8] = True  # the two opposite corners: centre of the frame
    assert centroid(mask).tolist() == [0.0, 0.0]
    mask[4, 8] = False
    assert centroid(mask).tolist() == [-1.0, -1.0]  # top left
    assert centroid(np.zeros((5, 9), bool)).tolist() == [0.0, 0.0]


@pytest.fixture(scope="module")
def one_video_split(tmp_path_factory):
    """A freshly generated ReasonVOS-lite split of one short video (seed never used for training)."""
    from visa_lib.data.reasonvos_lite import generate_split

    root = tmp_path_factory.mktemp("one_video")
    generate_split(root, "valid", seed=123, num_videos=1, frames_min=12, frames_max=12, progress=False)
    return root


def test_toy_report_decomposes_the_pipeline(one_video_split, tmp_path, capsys):
    from visa_lib.data.revos import load_revos

    argv = ["--data-root", str(one_video_split), "--out", str(tmp_path)]
    argv += ["--generator-seed", "123", "--generator-frames", "12", "12"]
    summary = load_script("toy_report").main(argv)
    table = summary["table"]
    assert list(table) == ["tfs:visa", "oracle:visa", "tfs:gt", "oracle:gt"]
    assert table["oracle:gt"]["target_frame_iou"] == 1.0  # the ground-truth rows decode nothing
    assert table["tfs:gt"]["target_frame_iou"] == 1.0
    for row in table.values():
        assert 0 <= row["overall"] <= 100 and 0 <= row["target_frame_iou"] <= 1
    # ground truth on the frame where the target is largest, carried by XMem, beats no mask at all
    assert table["oracle:gt"]["overall"] > 30
    # the VISA rows split by query kind; every expression of the video lands in exactly one kind
    by_kind = summary["iou_by_kind"]
    assert list(by_kind) == ["tfs:visa", "oracle:visa"]
    assert sum(g["count"] for g in by_kind["tfs:visa"].values()) == len(
        list(load_revos(one_video_split, "valid").expressions())
    )
    assert "| query kind | expressions |" in capsys.readouterr().out


def test_toy_ablations_scores_every_row_of_table_5(one_video_split, tmp_path):
    table = load_script("toy_ablations").main(["--data-root", str(one_video_split), "--out", str(tmp_path)])
    rows = table["table5"]
    assert len(rows) == 8 and "first_0" in rows and "tfs_12_global_local" in rows
    assert all(0 <= row["overall"] <= 100 for row in rows.values())
    assert "tokens_per_frame" not in table


def test_toy_ablations_retrains_visa_per_tokens_per_frame(one_video_split, tmp_path, capsys):
    """14 tokens per frame: a VISA stage with 8 + 4 + 2 clusters is trained (shortened here) and scored."""
    argv = ["--data-root", str(one_video_split), "--out", str(tmp_path), "--skip-table5"]
    argv += ["--tokens-per-frame", "14", "--train-steps", "2", "2", "0"]
    table = load_script("toy_ablations").main(argv)
    assert list(table) == ["tokens_per_frame"] and list(table["tokens_per_frame"]) == [14]
    assert 0 <= table["tokens_per_frame"][14]["overall"] <= 100
    assert "| 14 (56) |" in capsys.readouterr().out


def test_train_toy_tfs_trains_scores_and_saves_a_sampler(tmp_path):
    """A few steps on one generated video + a one-video train split; scored beside the reference samplers."""
    from visa_lib.data.reasonvos_lite import generate_split
    from visa_lib.tfs.video_llm import VideoLLMSampler, build_frame_sampler

    root = tmp_path / "data"
    for split, seed in (("train", 321), ("valid", 123)):
        generate_split(root, split, seed=seed, num_videos=1, frames_min=12, frames_max=12, progress=False)
    out = tmp_path / "tfs.safetensors"
    argv = ["--videos", "1", "--steps", "2", "--batch", "2", "--data-root", str(root), "--out", str(out)]
    summary = load_script("train_toy_tfs").main(argv)
    assert [row["sampler"] for row in summary["valid"]] == ["video_llm", "uniform", "first_frame", "oracle"]
    assert all(0 <= row["hit_rate"] <= 1 and row["count"] > 0 for row in summary["valid"])
    assert summary["valid"][-1]["hit_rate"] == 1.0  # the oracle sampler always hits
    assert isinstance(build_frame_sampler("toy", weights=out), VideoLLMSampler)


def test_train_toy_sam_label_map_lines_up_with_sam_input():
    import numpy as np

    script = load_script("train_toy_sam")
    masks = np.zeros((2, 240, 320), dtype=bool)
    masks[0, :120, :160] = True  # top-left quarter of the frame
    masks[1, 200:, 280:] = True  # bottom-right corner
    labels = script.label_map(masks, ["cat", "red square"], resized=(192, 256), size=64).numpy()
    background = len(script.DESCRIPTIONS)
    assert labels.shape == (64, 64)
    assert (labels[48:] == -1).all()  # padding rows of the 256-square input are ignored
    assert labels[5, 5] == script.DESCRIPTIONS.index("cat") and labels[30, 40] == background
    assert labels[47, 63] == script.DESCRIPTIONS.index("red square")


def test_train_toy_sam_where_prompts_train_the_decoder_not_a_frozen_encoder(tmp_path):
    import numpy as np
    import torch

    from visa_lib.model.sam import TOY_SAM_WEIGHTS, read_checkpoint

    script = load_script("train_toy_sam")
    masks = np.zeros((2, 11, 21), dtype=bool)
    masks[0, 0, 0] = masks[1, 10, 20] = True  # two one-pixel objects in opposite corners
    assert script.object_centroids(masks).tolist() == [[-1.0, -1.0], [1.0, 1.0]]
    out = tmp_path / "sam.safetensors"
    args = ["--init", str(TOY_SAM_WEIGHTS), "--freeze-encoder", "--where-prob", "1", "--class-prob", "0"]
    args += ["--steps", "1", "--pool", "2", "--eval-videos", "1", "--lr", "1e-2", "--out", str(out)]
    script.main(args)
    before, after = read_checkpoint(TOY_SAM_WEIGHTS), read_checkpoint(out)
    encoder = [k for k in before if k.startswith("image_encoder.")]
    decoder = [k for k in before if k.startswith("mask_decoder.")]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
    assert any(not torch.equal(before[k], after[k]) for k in decoder)
    from visa_lib.model.sam import build_sam

    clip = script.render_clip(0, 4, seed=1000)
    sam, dim = build_sam("toy"), 64
    scores = script.where_prompt_miou(
        sam, torch.nn.Embedding(len(script.DESCRIPTIONS), dim), torch.nn.Linear(2, dim), [clip]
    )
    assert scores and set(scores) <= {"unique", "twinned"} and all(0 <= v <= 100 for v in scores.values())


def test_probe_seg_state_ridge_reads_linear_codes_not_noise():
    import torch

    probe = load_script("probe_seg_state")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=generator, dtype=torch.float64)
    y = x[:, :2] * 3 + 1
    assert probe.ridge_r2(x[:100], y[:100], x[100:], y[100:], ridge=1e-3) == pytest.approx(1.0, abs=1e-4)
    noise = torch.randn(200, 2, generator=generator, dtype=torch.float64)
    assert probe.ridge_r2(x[:100], noise[:100], x[100:], noise[100:], ridge=1e-3) < 0.2


def test_probe_seg_state_attention_reads_the_named_token_and_not_noise():
    import torch

    probe = load_script("probe_seg_state")
    generator = torch.Generator().manual_seed(0)

    def data(n: int, carry: bool) -> dict:
        # 4 tokens per item, each of another name (one-hot, dims 0-3); the item's name picks one
        order = torch.stack([torch.randperm(4, generator=generator) for _ in range(n)])  # [n,4]
        positions = torch.rand(n, 4, 2, generator=generator) * 2 - 1
        tokens = torch.cat([torch.nn.functional.one_hot(order, 4).float() * 3, positions], -1)  # [n,4,6]
        pick = torch.randint(0, 4, (n,), generator=generator)
        xy = positions[torch.arange(n), pick] if carry else torch.rand(n, 2, generator=generator) * 2 - 1
        name = torch.nn.functional.one_hot(order[torch.arange(n), pick], 4)
        return {"tokens": tokens, "name": name.double(), "xy": xy.double()}

    assert probe.attention_probe_r2(data(400, True), data(100, True), steps=600) > 0.8  # 0.89
    assert probe.attention_probe_r2(data(400, False), data(100, False), steps=600) < 0.2  # -0.04


def test_probe_seg_state_prototype_finds_the_named_patch_and_reads_what_its_tokens_say():
    import torch

    probe = load_script("probe_seg_state")
    generator = torch.Generator().manual_seed(0)

    def data(n: int, position_in_content: bool) -> dict:
        # a 4 x 4 grid of patches, each of another name (one-hot, 16 dims); the item's name picks one
        order = torch.stack([torch.randperm(16, generator=generator) for _ in range(n)])  # [n,16]
        grid = torch.stack([torch.arange(16) % 4, torch.arange(16) // 4], -1).float()  # (x, y) per patch
        noise = torch.rand(n, 16, 2, generator=generator)
        extra = grid.expand(n, -1, -1) / 3 if position_in_content else noise
        patches = torch.cat([torch.nn.functional.one_hot(order, 16).float() * 3, extra], -1).double()
        pick = torch.randint(0, 16, (n,), generator=generator)
        name = torch.nn.functional.one_hot(order[torch.arange(n), pick], 16).double()
        target = patches[torch.arange(n), pick]
        return {"patches": patches, "pooled": target, "name": name, "xy": grid[pick].double()}

    fit, held = data(200, True), data(50, True)
    assert probe.prototype_probe_r2(fit, held, "patches", "grid") > 0.95
    assert probe.prototype_probe_r2(fit, held, "patches", "content") > 0.95  # 0.999
    fit, held = data(200, False), data(50, False)
    assert probe.prototype_probe_r2(fit, held, "patches", "grid") > 0.95  # 1.0: found ...
    assert probe.prototype_probe_r2(fit, held, "patches", "content") < 0.2  # -0.07: ... not said


def test_probe_seg_state_runs_on_the_shipped_model():
    result = load_script("probe_seg_state").main(
        ["--train-videos", "2", "--fit-items", "4", "--eval-items", "3", "--merge", "32,16,8"]
    )
    assert result["merged_56_prototype_content_to_xy_r2"] <= 1
    assert result["fit_items"] == 4 and result["eval_items"] == 3
    assert all(result[f"{s}_to_{t}_r2"] <= 1 for s in ("state", "prompt") for t in ("xy", "code"))
    assert 0 <= result["state_name_accuracy"] <= 1 and 0 <= result["name_majority"] <= 1
    probes = ("patches_pooled", "patches_attention", "merged_attention", "patches_prototype_grid")
    probes += ("patches_prototype_content", "merged_prototype_content")
    assert all(result[f"{name}_to_xy_r2"] <= 1 for name in probes)
