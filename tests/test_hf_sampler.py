"""The Hugging Face video-LLM frame sampler, on tiny random models of two families (no download)."""

from __future__ import annotations

import numpy as np
import pytest

from visa_lib.tfs import aggregate, build_frame_sampler, build_tfs_question, target_frame
from visa_lib.tfs.hf_tiny import FAMILIES, save_tiny_video_llm
from visa_lib.tfs.hf_video_llm import HFVideoLLMSampler

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FRAMES = np.random.default_rng(0).integers(0, 256, (50, 40, 60, 3), dtype=np.uint8)


@pytest.fixture(scope="module", params=FAMILIES)
def folder(request, tmp_path_factory):
    return save_tiny_video_llm(tmp_path_factory.mktemp(request.param), request.param, seed=1)


def test_hf_sampler_asks_visas_question_k_times_with_visas_sampling(folder, monkeypatch):
    sampler = build_frame_sampler(f"hf:{folder}", seed=3, num_answers=4)
    assert isinstance(sampler, HFVideoLLMSampler) and sampler.max_frames == 32
    prompt = sampler.prompt("which cat is last?")
    assert build_tfs_question("which cat is last?") in prompt  # VISA's exact question, "?" stripped once
    seen = {}
    generate = sampler.model.generate

    def spy(**kwargs):
        seen.update(kwargs)
        return generate(**kwargs)

    monkeypatch.setattr(sampler.model, "generate", spy)
    texts = ["the cat", "which cat is last?"]
    results = sampler.choose(FRAMES, texts)
    config = seen["generation_config"]
    assert (config.do_sample, config.temperature, config.top_p, config.top_k) == (True, 0.6, 0.9, 50)
    assert config.num_return_sequences == 4
    for result in results:
        assert len(result.answers) == 4 and all(isinstance(a, str) for a in result.answers)
        assert result.tp == aggregate(result.answers) and result.frame == target_frame(result.tp, 50)
    # Each query is seeded by its own text: alone, or after another query, it gets the same answers.
    again = build_frame_sampler(f"hf:{folder}", seed=3, num_answers=4).choose(FRAMES, texts[::-1])
    assert again[0].answers == results[1].answers and again[1].answers == results[0].answers


def test_hf_sampler_runs_in_the_pipeline_and_bad_names_say_what_to_do(folder, tmp_path):
    from visa_lib.pipeline import build_pipeline, run_on_video

    pipeline = build_pipeline("toy", sampler=f"hf:{folder}")
    result = run_on_video(FRAMES[:12], "the cat", pipeline, progress=False)
    assert len(result.answers) == 10 and 0 <= result.target_frame < 12
    with pytest.raises(FileNotFoundError, match="hf:.*cannot load it"):
        build_frame_sampler(f"hf:{tmp_path / 'missing'}")
