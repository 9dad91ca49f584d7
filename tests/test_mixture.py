"""VISA's sample construction per data family and the weighted, worker-safe mixture."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from dataset_fixtures import EXPLANATION, write_instruction_json, write_lvvis, write_reasonseg, write_refer

from visa_lib.data.image_datasets import ReasonSegDataset
from visa_lib.data.instruction import InstructionDataset
from visa_lib.data.revos import load_revos
from visa_lib.model.prompts import ANSWER_LIST, IGNORE_INDEX, IMAGE_TOKEN, question_templates
from visa_lib.model.tokenizer import build_toy_tokenizer
from visa_lib.paths import REASONVOS_LITE
from visa_lib.train.conversation import conversation_labels, instruction_prompt, instruction_turns
from visa_lib.train.mixture import (
    VISA_FAMILY_RATES,
    VISA_RVOS_RATES,
    VisaMixture,
    data_loader,
    default_mixture,
    family_rates,
    samples_from_config,
)
from visa_lib.train.sample_builders import ImageSamples, InstructionSamples, VideoSamples


@pytest.fixture(scope="module")
def lite():
    return load_revos(REASONVOS_LITE, "train")


def _matching_reference(sample) -> int:
    """Index of the reference frame identical to the target image (-1 if none)."""
    same = [
        k for k, frame in enumerate(sample.reference_frames) if np.array_equal(frame, sample.target_image)
    ]
    return same[0] if same else -1


def test_video_sample_follows_visa(lite):
    builder = VideoSamples("lite", lite, negative_prob=0.0)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        sample = builder.draw(rng)
        refs = sample.reference_frames
        assert 8 <= len(refs) <= 12 and refs.dtype == np.uint8
        assert 1 <= len(sample.expressions) <= 3
        assert sample.gt_masks.shape == (len(sample.expressions), *refs.shape[1:3])
        assert _matching_reference(sample) >= 0  # the target frame is one of the references
        for text, q, a in zip(sample.expressions, sample.question_index, sample.answer_index, strict=True):
            assert 0 <= q < len(question_templates(text)) and 0 <= a < len(ANSWER_LIST)
        # replay the draw to know the clip, then check the masks against the dataset
        from visa_lib.data.sampling import sample_training_clip

        clip = sample_training_clip(lite.videos, np.random.default_rng(seed), negative_prob=0.0)
        t = clip.target_frame
        for k, exp_id in enumerate(clip.expression_ids):
            expected = lite.gt_masks(clip.video, exp_id, frames=slice(t, t + 1))[0] > 0
            np.testing.assert_array_equal(sample.gt_masks[k], expected)
        np.testing.assert_array_equal(sample.target_image, lite.read_frame(clip.video, t))


def test_negative_video_sample_has_empty_masks_and_a_foreign_target(lite):
    builder = VideoSamples("lite", lite, negative_prob=1.0)
    sample = builder.draw(np.random.default_rng(3))
    assert not sample.gt_masks.any()
    assert _matching_reference(sample) == -1
    assert sample.target_image.shape == sample.reference_frames.shape[1:]


def test_negative_target_of_another_size_is_resized(tmp_path):
    write_lvvis(tmp_path)  # two videos of different sizes
    builder = samples_from_config(
        {"name": "lvvis", "format": "lvvis", "root": tmp_path, "negative_prob": 1.0}
    )
    sample = builder.draw(np.random.default_rng(0))
    assert sample.target_image.shape == sample.reference_frames.shape[1:]
    assert sample.gt_masks.shape[1:] == sample.reference_frames.shape[1:3] and not sample.gt_masks.any()
    assert sample.expressions[0] in ("the running cat", "traffic light")


def test_image_samples_use_the_image_as_reference_and_target(tmp_path):
    expected = write_reasonseg(tmp_path / "ReasonSeg")
    reason = samples_from_config(
        {"name": "reason_seg", "format": "reasonseg", "root": tmp_path / "ReasonSeg", "explanatory": 0.0}
    )
    masks = write_refer(tmp_path / "refer_seg")
    refer = samples_from_config({"name": "refcoco", "format": "refcoco", "root": tmp_path / "refer_seg"})
    explained = 0
    for seed in range(12):
        sample = reason.draw(np.random.default_rng(seed))
        assert len(sample.reference_frames) == 1
        np.testing.assert_array_equal(sample.reference_frames[0], sample.target_image)
        name = "img_a" if sample.target_image.shape[:2] == (20, 30) else "img_b"
        assert set(sample.expressions) <= set(expected[name]["texts"])
        assert len(sample.prompts) == len(sample.gt_masks) == len(sample.expressions)
        for text, prompt, mask in zip(sample.expressions, sample.prompts, sample.gt_masks, strict=True):
            np.testing.assert_array_equal(mask, expected[name]["label"] == 1)
            assert prompt.count(IMAGE_TOKEN) == 2 and prompt.count("[SEG]") == 1
            if EXPLANATION in prompt:  # [SEG] and the explanation, the query lower-cased
                explained += 1
                assert prompt.endswith(f"[SEG]. {EXPLANATION}</s>") and text.lower() in prompt
            elif name == "img_a":  # a sentence: the long list, the text as written
                assert f"{text} Please find it in the Reference Video" in prompt
            else:
                assert "What is" in prompt or "Please find the" in prompt
        sample = refer.draw(np.random.default_rng(seed))
        by_text = {"man on the left": 11, "brown dog": 12, "dog lying down": 12, "crowd in the back": 13}
        assert len(sample.expressions) == len(set(sample.expressions)) <= 3
        for text, mask in zip(sample.expressions, sample.gt_masks, strict=True):
            np.testing.assert_array_equal(mask, masks[by_text[text]])
    assert explained > 0


def test_reasonseg_explanation_only_variant(tmp_path):
    write_reasonseg(tmp_path)
    builder = ImageSamples("reason_seg", ReasonSegDataset(tmp_path), explanatory=1.0)
    for seed in range(6):
        sample = builder.draw(np.random.default_rng(seed))
        if sample.target_image.shape[:2] != (20, 30):
            continue  # img_b has no explanation
        assert sample.reference_frames.shape == (0, 20, 30, 3) and sample.gt_masks.shape == (0, 20, 30)
        for text, prompt in zip(sample.expressions, sample.prompts, strict=True):
            assert prompt.count(IMAGE_TOKEN) == 1 and "[SEG]" not in prompt
            assert prompt.endswith(f"USER: (0)<image>\n{text} ASSISTANT: {EXPLANATION}</s>")
        break
    else:
        raise AssertionError("img_a was never drawn")


def test_instruction_samples_prompts_slots_and_labels(tmp_path):
    data = InstructionDataset(write_instruction_json(tmp_path), image_root=tmp_path / "images")
    builder = InstructionSamples("llava", data)
    seen = set()
    for seed in range(12):
        sample = builder.draw(np.random.default_rng(seed))
        frames = len(sample.reference_frames) + 1
        assert sample.prompts[0].count(IMAGE_TOKEN) == frames
        assert sample.gt_masks.shape == (0, *sample.target_image.shape[:2])
        assert sample.reference_frames.shape[1:] == sample.target_image.shape  # one size per sample
        seen.add(frames)
        if "Where is it?" in sample.prompts[0]:
            assert sample.prompts[0].endswith(
                "ASSISTANT: A red square.</s>USER: Where is it? ASSISTANT: On the left.</s>"
            )
    assert 1 in seen and 2 in seen and any(8 <= f <= 12 for f in seen)  # image, two images, video frames


@pytest.mark.parametrize(
    ("turns", "frames", "style", "expected"),
    [
        # LLaVA: every round, the placeholder replaced by numbered slots in front of its question
        ([("What is it? <image>", "A cat."), ("Where?", "Left.")], 1, "llava",
         [("(0)<image>\nWhat is it?", "A cat."), ("Where?", "Left.")]),
        # ... in front of the first question when no question has one
        ([("What is it?", "A cat.")], 2, "llava", [("(0)<image>, (1)<image>\nWhat is it?", "A cat.")]),
        # Chat-UniVi: the last round only, a single <image> stays as written
        ([("<image>\nWhat is it?", "A cat."), ("<image>\nAnd now?", "A dog.")], 1, "chatunivi",
         [("<image>\nAnd now?", "A dog.")]),
        # ... a trailing <image> (ScienceQA) moves to the front
        ([("Context: a map. <image>", "North.")], 1, "chatunivi", [("<image>\nContext: a map.", "North.")]),
        # ... <image><image> and <video> become numbered slots in place
        ([("Compare <image><image> please.", "Same.")], 2, "chatunivi",
         [("Compare (0)<image>, (1)<image> please.", "Same.")]),
        ([("<video>\nWhat happens?", "It rains.")], 3, "chatunivi",
         [("(0)<image>, (1)<image>, (2)<image>\nWhat happens?", "It rains.")]),
        # ... placeholders that do not match the frames: numbered slots in front instead
        ([("Describe <image>.", "Two dogs.")], 2, "chatunivi",
         [("(0)<image>, (1)<image>\nDescribe .", "Two dogs.")]),
    ],
)  # fmt: skip
def test_instruction_turns_place_one_slot_per_frame(turns, frames, style, expected):
    rounds = instruction_turns(turns, frames, style)
    assert rounds == expected
    assert instruction_prompt(rounds).count(IMAGE_TOKEN) == frames


def test_instruction_turns_errors():
    with pytest.raises(ValueError, match="style 'vqa' is unknown"):
        instruction_turns([("q", "a")], 1, "vqa")
    with pytest.raises(ValueError, match="at least one round and one frame"):
        instruction_turns([("q", "a")], 0)


def test_chatunivi_samples_last_round_and_square_images(tmp_path):
    data = InstructionDataset(write_instruction_json(tmp_path), image_root=tmp_path / "images")
    builder = InstructionSamples("chatunivi", data, style="chatunivi", frame_range=(3, 3))
    prompts = {}
    for seed in range(12):
        sample = builder.draw(np.random.default_rng(seed))
        frames = len(sample.reference_frames) + 1
        assert sample.prompts[0].count(IMAGE_TOKEN) == frames and sample.prompts[0].count("USER:") == 1
        prompts[frames] = (sample.prompts[0], sample.target_image)
    one_image, image = prompts[1]
    assert "USER: (0)<image>\nWhere is it? ASSISTANT: On the left.</s>" in one_image  # the last round
    assert image.shape == (24, 24, 3)  # the 20x24 image centred on a square of CLIP's mean colour
    np.testing.assert_array_equal(image[0, 0], [122, 116, 104])
    assert "(0)<image>, (1)<image>, (2)<image>\nWhat happens?" in prompts[3][0]
    with pytest.raises(ValueError, match="style 'x' is unknown"):
        InstructionSamples("bad", data, style="x")


def test_conversation_labels_cover_every_answer():
    tokenizer = build_toy_tokenizer(extra_words=["where", "brighter"])
    prompt = instruction_prompt(
        instruction_turns(
            [("<image> what is in the image?", "it is red square."), ("where is it?", "on the left.")], 2
        )
    )
    assert prompt.count(IMAGE_TOKEN) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ids, labels = conversation_labels(tokenizer, prompt)
    assert len(ids) == len(labels)
    learned = tokenizer.decode([t for t in labels if t != IGNORE_INDEX])
    assert learned.replace(" ", "") == "itisredsquare.</s>ontheleft.</s>"


def test_prompted_samples_run_through_the_model(tmp_path):
    from test_visa_model import build_tiny_visa

    from visa_lib.train.step import sample_forward

    data = InstructionDataset(write_instruction_json(tmp_path), image_root=tmp_path / "images")
    sample = InstructionSamples("llava", data).draw(np.random.default_rng(1))
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # words outside the toy vocabulary become <unk>
        model = build_tiny_visa()
        loss, out = sample_forward(model, sample)
    assert out.mask_logits.shape[0] == 0 and torch.isfinite(loss.ce) and loss.ce > 0
    write_reasonseg(tmp_path / "ReasonSeg")
    sample = ImageSamples("reason_seg", ReasonSegDataset(tmp_path / "ReasonSeg"), explanatory=0.0).draw(
        np.random.default_rng(0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss, out = sample_forward(model, sample)
    assert out.mask_logits.shape == (len(sample.expressions), *sample.target_image.shape[:2])
    assert torch.isfinite(loss.total)


def test_mixture_rates_and_config_errors(tmp_path):
    write_lvvis(tmp_path / "lvvis")
    specs = [
        {"name": "lite", "format": "revos", "root": REASONVOS_LITE, "rate": 3},
        {"name": "lvvis", "format": "lvvis", "root": tmp_path / "lvvis", "rate": 1},
    ]
    mixture = VisaMixture.from_config({"datasets": specs, "samples_per_epoch": 4000, "seed": 5})
    np.testing.assert_allclose(mixture.probabilities, [0.75, 0.25])
    picks = np.array([mixture.dataset_index(i) for i in range(4000)])
    assert abs((picks == 1).mean() - 0.25) < 0.03
    assert mixture[7].dataset == mixture.builders[mixture.dataset_index(7)].name
    with pytest.raises(ValueError, match="unknown format 'coco'"):
        samples_from_config({"name": "x", "format": "coco", "root": tmp_path})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['frames'\]"):
        samples_from_config({"format": "lvvis", "root": tmp_path / "lvvis", "frames": 3})
    with pytest.raises(ValueError, match="rates must be >= 0"):
        VisaMixture(mixture.builders, [0, 0], 10)
    with pytest.raises(ValueError, match="unknown key"):
        VisaMixture.from_config({"datasets": specs, "epochs": 2})


def test_visa_rates_flatten_two_levels():
    rates = family_rates(VISA_FAMILY_RATES, VISA_RVOS_RATES, "rvos")
    assert sum(rates.values()) == pytest.approx(12 / 32)
    assert rates["refytvos"] == pytest.approx(12 / 32 * 15000 / 25400)


def _fingerprint(batches) -> list[tuple]:
    return [
        (
            s.dataset,
            tuple(s.expressions),
            s.reference_frames.shape,
            int(s.target_image.sum()),
            int(s.gt_masks.sum()),
        )
        for batch in batches
        for s in batch
    ]


def test_loading_in_two_workers_is_deterministic():
    mixture = default_mixture(samples_per_epoch=6, seed=11)
    in_process = _fingerprint(data_loader(mixture, batch_size=2, num_workers=0))
    workers = _fingerprint(data_loader(mixture, batch_size=2, num_workers=2))
    assert workers == in_process and len(workers) == 6
    assert _fingerprint(data_loader(default_mixture(6, seed=11), batch_size=3, num_workers=2)) == in_process
    assert _fingerprint(data_loader(default_mixture(6, seed=12), batch_size=2)) != in_process
    mixture.set_epoch(1)
    next_epoch = _fingerprint(data_loader(mixture, batch_size=2))
    assert next_epoch != in_process
    mixture.set_epoch(0)  # a global index past the epoch runs on into the next one
    assert _fingerprint([[mixture[6 + i] for i in range(6)]]) == next_epoch
    with pytest.raises(IndexError, match="negative"):
        mixture[-1]


def test_ranks_of_a_distributed_sampler_share_out_the_same_samples():
    mixture = default_mixture(samples_per_epoch=6, seed=11)
    whole = _fingerprint(data_loader(mixture, batch_size=1))
    ranks = []
    for rank in range(2):
        sampler = torch.utils.data.DistributedSampler(mixture, num_replicas=2, rank=rank, shuffle=False)
        ranks.append(_fingerprint(data_loader(mixture, batch_size=1, sampler=sampler)))
    assert ranks[0] == whole[0::2] and ranks[1] == whole[1::2]


def test_every_format_from_one_config_loads_in_two_workers(tmp_path):
    from dataset_fixtures import two_videos, write_refytvos_published

    from visa_lib.data.formats import write_mevis_split

    write_mevis_split(tmp_path / "mevis", "train", *two_videos())
    write_lvvis(tmp_path / "lvvis")
    for name in ("refytvos", "davis17"):
        write_refytvos_published(tmp_path / name)
    write_reasonseg(tmp_path / "ReasonSeg")
    refer = ("refcoco", "refcoco+", "refcocog")
    for dataset in refer:
        write_refer(tmp_path / "refer_seg", dataset, "umd" if dataset == "refcocog" else "unc")
    instructions = write_instruction_json(tmp_path)
    specs = [
        {"name": "revos", "format": "revos", "root": REASONVOS_LITE},
        *({"name": f, "format": f, "root": tmp_path / f} for f in ("mevis", "lvvis", "refytvos", "davis17")),
        {"name": "reason_seg", "format": "reasonseg", "root": tmp_path / "ReasonSeg"},
        *({"name": f, "format": f, "root": tmp_path / "refer_seg"} for f in refer),
        {"name": "llava", "format": "instruction", "root": instructions, "image_root": tmp_path / "images"},
        {"name": "univi", "format": "instruction", "style": "chatunivi", "root": instructions,
         "image_root": tmp_path / "images", "frame_range": [3, 4]},
    ]  # fmt: skip
    for spec in specs:
        spec["rate"] = 1.0
    mixture = VisaMixture.from_config({"datasets": specs, "samples_per_epoch": 60, "seed": 3})
    batches = list(data_loader(mixture, batch_size=4, num_workers=2))
    in_workers = _fingerprint(batches)
    assert in_workers == _fingerprint(data_loader(mixture, batch_size=4))
    assert {name for name, *_ in in_workers} == {spec["name"] for spec in specs}  # every reader ran
    for sample in (s for batch in batches for s in batch):
        if sample.prompts is not None:  # image and instruction samples: one <image> slot per frame
            frames = len(sample.reference_frames) + 1
            assert all(p.count(IMAGE_TOKEN) == frames for p in sample.prompts), sample.dataset
