"""Tests of visa_lib.tfs: VISA's question / parsing / aggregation rules, backends, the video LLM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visa_lib.model.tokenizer import build_toy_tokenizer, tokenizer_vocabulary
from visa_lib.tfs import (
    FirstFrameSampler,
    OracleSampler,
    UniformSampler,
    aggregate,
    build_tfs_question,
    oracle_frame,
    oracle_tp,
    parse_percentage,
    percentage_answer,
    target_frame,
)
from visa_lib.tfs.samplers import query_seed, subsample
from visa_lib.tfs.video_llm import (
    TOY_TFS_WEIGHTS,
    VIDEO_LLM_CONFIGS,
    VideoLLM,
    VideoLLMConfig,
    VideoLLMSampler,
    _top_p_sample,
    build_frame_sampler,
    build_tfs_prompt,
    decode_answer,
    read_metadata,
    save_video_llm,
)


def test_question_is_visas_exact_string():
    q = build_tfs_question("which object appears last?")
    assert q == (
        "If I want to find 'which object appears last', which percentage mark of the video should I check?\n"
        "             Please choose one answer from "
        "0%, 10%, 20%, 30%, 40%, 50%, 60%, 70%, 80%, 90%, and 100%."
    )
    assert build_tfs_question("the red square").startswith("If I want to find 'the red square', which")
    q = build_tfs_question("what??")
    assert "??" not in q and "'what?'" in q  # one "?" only
    with pytest.raises(ValueError, match="empty"):
        build_tfs_question("  ")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("40%", 0.4),
        ("I would check the 70% mark.", 0.7),
        ("100%", 1.0),
        ("0%", 0.0),
        ("last 0%", 1.0),  # "last X%" forms come first in the list
        ("the last 30% of the video", 0.7),
        ("last 100%", 0.0),
        ("50% or 10%", 0.1),  # list order, not text order: "10%" precedes "50%"
        ("20% then 100%", 0.2),
        ("15%", None),  # no listed substring
        ("somewhere in the middle", None),
        ("5 0 %", None),
    ],
)
def test_parse_percentage_follows_list_order(text, value):
    assert parse_percentage(text) == value


def test_aggregate_mean_and_fallback():
    assert aggregate(["10%", "30%", "garbage", "last 10%"]) == pytest.approx((0.1 + 0.3 + 0.9) / 3)
    assert aggregate(["no idea", "?"]) == 0.5
    assert aggregate([]) == 0.5


def test_target_frame_mapping():
    assert target_frame(0.0, 30) == 0
    assert target_frame(0.5, 30) == 15
    assert target_frame(0.99, 30) == 29
    assert target_frame(1.0, 30) == 29  # int(N * 1.0) == N -> N - 1
    assert target_frame(0.34, 10) == 3
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        target_frame(1.2, 10)


def test_oracle_is_centre_of_most_visible_frames():
    areas = [0, 0, 10, 100, 95, 90, 20, 0, 0, 0]
    assert oracle_frame(areas) == 4  # frames 3, 4, 5 are >= 80 % of the max; 4 is their centre
    assert oracle_tp(areas) == pytest.approx(0.45)
    assert target_frame(oracle_tp(areas), 10) == 4
    # Two separate bursts: the centre frame is always one of the most-visible frames.
    assert oracle_frame([100, 0, 0, 0, 0, 0, 100, 100]) in (0, 6, 7)
    assert oracle_frame([0, 0, 0]) is None and oracle_tp([0, 0]) is None
    assert percentage_answer(0.45) in ("40%", "50%") and percentage_answer(0.96) == "100%"
    assert percentage_answer(0.04) == "0%"


def test_baselines_and_oracle_backends():
    frames = np.zeros((20, 8, 8, 3), np.uint8)
    first = FirstFrameSampler().sample(frames, "the cat")
    assert first.answers == ["0%"] * 10 and first.tp == 0.0 and first.frame == 0
    uni = UniformSampler(seed=1).sample(frames, "the cat")
    assert len(set(uni.answers)) > 1 and all(p is not None for p in uni.percentages)
    assert uni.tp == pytest.approx(np.mean(uni.percentages))
    assert UniformSampler(seed=1).sample(frames, "the cat").answers == uni.answers  # seeded per query
    assert UniformSampler(seed=1).sample(frames, "the dog").answers != uni.answers  # by its own text
    gt = np.zeros((20, 8, 8), bool)
    gt[12:16, 2:5, 2:5] = True
    oracle = OracleSampler().sample(frames, "the cat", gt_masks=gt)
    assert oracle.answers[0] == "70%" and gt[oracle.frame].any()  # centre 13.5/20 -> 0.675 -> 70 %
    empty = OracleSampler().sample(frames, "the cat", gt_masks=np.zeros_like(gt))
    assert empty.tp == 0.5  # nothing parses -> fallback
    with pytest.raises(ValueError, match="gt_masks"):
        OracleSampler().sample(frames, "the cat")


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = torch.Generator().manual_seed(0)
    draws = {int(_top_p_sample(logits, 1.0, 0.7, gen)) for _ in range(300)}
    assert draws == {0, 1}  # 0.5 + 0.3 reaches 0.7: tokens 2 and 3 are never drawn
    cold = {int(_top_p_sample(logits, 0.05, 0.9, gen)) for _ in range(50)}
    assert cold == {0}


@pytest.fixture(scope="module")
def tiny_llm():
    torch.manual_seed(0)
    tok = build_toy_tokenizer()
    cfg = VideoLLMConfig(
        vision_width=16,
        hidden_size=32,
        intermediate_size=64,
        num_layers=1,
        num_heads=2,
        vocab_size=len(tok),
        context_grid=4,
    )
    return VideoLLM(cfg), tok


def test_video_llm_two_tokens_per_frame_and_text_conditioning(tiny_llm):
    model, tok = tiny_llm
    visual = model.pool_patches(torch.randn(6, 256, 16))
    assert visual.shape == (6, 16, 16)
    q1 = torch.tensor(tok("the red square", add_special_tokens=False).input_ids)
    q2 = torch.tensor(tok("the cat", add_special_tokens=False).input_ids)
    t1, t2 = model.frame_tokens(visual, q1), model.frame_tokens(visual, q2)
    assert t1.shape == (12, 32)
    assert not torch.allclose(t1[0::2], t2[0::2])  # context tokens depend on the text
    torch.testing.assert_close(t1[1::2], t2[1::2])  # content tokens do not
    from visa_lib.model.tokenizer import tokenize_prompt

    ids = tokenize_prompt(tok, build_tfs_prompt("the cat"))
    assert model.embed(ids, t1).shape == (len(ids) - 1 + 12, 32)
    assert build_tfs_prompt("the cat", "40%").endswith("ASSISTANT: 40%</s>")


def test_video_llm_sampler_generates_k_answers_and_roundtrips(tiny_llm, tmp_path):
    model, tok = tiny_llm

    class _Tower:  # stand-in vision tower: random patch tokens of the right shape
        def encode_frames(self, frames):
            return torch.randn(len(frames), 256, 16, generator=torch.Generator().manual_seed(len(frames)))

    sampler = VideoLLMSampler(model, tok, _Tower(), seed=3)
    frames = np.zeros((9, 8, 8, 3), np.uint8)
    result = sampler.sample(frames, "the cat", num_answers=4)
    assert len(result.answers) == 4 and 0 <= result.frame < 9
    again = VideoLLMSampler(model, tok, _Tower(), seed=3).sample(frames, "the cat", num_answers=4)
    assert again.answers == result.answers
    assert decode_answer(tok, tok("40%", add_special_tokens=False).input_ids + [tok.eos_token_id, 7]) == "40%"
    path = tmp_path / "tfs.safetensors"
    save_video_llm(model, tokenizer_vocabulary(tok), path, {"note": "test"})
    assert "vocab" in read_metadata(path)


def test_full_size_config_is_llama_vid_13b():
    cfg = VIDEO_LLM_CONFIGS["llama-vid-13b"]
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.vision_width) == (5120, 40, 40, 1408)
    with pytest.raises(ValueError, match="unknown name"):
        build_frame_sampler("gpt")


def test_shipped_toy_sampler_answers_with_percentages():
    assert TOY_TFS_WEIGHTS.is_file(), "run scripts/train_toy_tfs.py to create the toy TFS weights"
    sampler = build_frame_sampler("toy", seed=0)
    from visa_lib.data.revos import load_revos
    from visa_lib.paths import REASONVOS_LITE

    split = load_revos(REASONVOS_LITE, "valid")
    video = next(iter(split.videos))
    frames = np.stack(list(split.iter_frames(video)))
    result = sampler.sample(frames, "which object appears last?")
    parsed = [p for p in result.percentages if p is not None]
    assert len(parsed) >= 8  # the trained sampler answers in the expected "NN%" form


class _CountingFrames:
    """A lazy video that records which frames were read."""

    def __init__(self, n):
        self.n, self.read = n, []

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.read.append(int(i))
        return np.full((8, 8, 3), int(i), np.uint8)


def test_choose_subsamples_encodes_once_and_seeds_each_query_by_its_text():
    class _Spy(UniformSampler):
        encodes = 0

        def encode(self, frames, indices):
            _Spy.encodes += 1
            return np.stack([frames[int(i)] for i in indices])

    frames = _CountingFrames(200)
    sampler = _Spy(seed=5, max_frames=16)
    both = sampler.choose(frames, ["the cat", "the dog"])
    assert _Spy.encodes == 1 and len(frames.read) == 16  # one encoding, only the shown frames read
    assert frames.read == subsample(np.arange(200), 16).tolist()
    assert all(len(r.answers) == 10 and r.num_frames == 200 for r in both)
    assert all(r.frame == target_frame(r.tp, 200) for r in both)  # frame of the FULL video
    # A query's answers do not depend on what was asked before it or next to it.
    alone = _Spy(seed=5, max_frames=16).choose(frames, ["the dog"])[0]
    swapped = _Spy(seed=5, max_frames=16).choose(frames, ["the dog", "the cat"])
    assert alone.answers == both[1].answers == swapped[0].answers
    assert swapped[1].answers == both[0].answers
    assert _Spy(seed=6, max_frames=16).choose(frames, ["the dog"])[0].answers != alone.answers
    assert query_seed(5, "the dog") == query_seed(5, "the dog") != query_seed(5, "the cat")
