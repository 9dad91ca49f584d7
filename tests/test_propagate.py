"""propagate(): directions, merging, multi-object inputs, lazy frames, errors, and real tracking."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from visa_lib.metrics import jaccard
from visa_lib.paths import TOY_WEIGHTS
from visa_lib.xmem import MemoryConfig, XMem, XMemConfig, XMemTracker
from visa_lib.xmem.inference import TOY_XMEM_FILE
from visa_lib.xmem.propagate import propagate

T, H, W = 9, 48, 64


def _square_video(t: int = T, h: int = H, w: int = W, step: int = 3, seed: int = 0):
    """A red square moving right over a fixed random texture; returns (frames uint8 [t,h,w,3], masks bool)."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(40, 200, (h, w, 3), dtype=np.uint8)
    frames = np.repeat(bg[None], t, axis=0)
    masks = np.zeros((t, h, w), bool)
    side = h // 3
    for i in range(t):
        x0 = 4 + step * i
        masks[i, h // 3 : h // 3 + side, x0 : x0 + side] = True
        frames[i][masks[i]] = (230, 20, 20)
    return frames, masks


@pytest.fixture(scope="module")
def random_tracker() -> XMemTracker:
    torch.manual_seed(0)
    return XMemTracker(XMem(XMemConfig.toy()), MemoryConfig.toy().with_(size=-1))


def test_outputs_and_start_frame(random_tracker):
    frames, masks = _square_video()
    out, prob = propagate(frames, masks[4], 4, random_tracker, return_probabilities=True, progress=False)
    assert out.dtype == bool and out.shape == (T, H, W)
    assert prob.dtype == np.float32 and prob.shape == (T, H, W)
    assert (prob >= 0).all() and (prob <= 1).all()
    assert np.array_equal(out[4], masks[4])  # the given frame returns the given mask
    assert np.array_equal(out, prob > np.maximum(1 - prob, 0))  # single object: argmax {bg, fg}


def test_directions_are_independent_passes_merged(random_tracker):
    frames, masks = _square_video()
    fwd = propagate(frames, masks[3], 3, random_tracker, "forward", progress=False)
    bwd = propagate(frames, masks[3], 3, random_tracker, "backward", progress=False)
    both = propagate(frames, masks[3], 3, random_tracker, "both", progress=False)
    assert not fwd[:3].any() and not bwd[4:].any()
    assert np.array_equal(both[3:], fwd[3:]) and np.array_equal(both[:3], bwd[:3])
    # VISA's backward run is a forward run on the reversed frame list
    rev = propagate(frames[::-1], masks[3], T - 1 - 3, random_tracker, "forward", progress=False)
    assert np.array_equal(bwd, rev[::-1])


def test_multi_object_label_map_and_stack(random_tracker):
    frames, masks = _square_video()
    labels = np.zeros((H, W), np.uint8)
    labels[masks[2]] = 7
    labels[2:10, 2:12] = 3
    out = propagate(frames, labels, 2, random_tracker, progress=False)
    assert out.dtype == np.uint8 and out.shape == (T, H, W)
    assert set(np.unique(out)) <= {0, 3, 7} and np.array_equal(out[2], labels)
    stack = np.stack([labels == 3, labels == 7])
    out2, prob2 = propagate(frames, stack, 2, random_tracker, return_probabilities=True, progress=False)
    assert out2.shape == prob2.shape == (2, T, H, W)
    assert np.array_equal(out2[0], out == 3) and np.array_equal(out2[1], out == 7)  # same joint run


class _CountingFrames:
    """A lazy frame source: ``len`` + indexing, records every read."""

    def __init__(self, frames: np.ndarray) -> None:
        self.frames, self.reads = frames, []

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> np.ndarray:
        self.reads.append(i)
        return self.frames[i].copy()


def test_lazy_frames_are_read_once_per_pass(random_tracker):
    frames, masks = _square_video()
    src = _CountingFrames(frames)
    out = propagate(src, masks[5], 5, random_tracker, progress=False)
    assert src.reads == [5, 6, 7, 8, 5, 4, 3, 2, 1, 0]
    assert np.array_equal(out, propagate(frames, masks[5], 5, random_tracker, progress=False))
    streamed = propagate(iter(frames), masks[2], 2, random_tracker, "forward", progress=False)
    assert np.array_equal(streamed, propagate(frames, masks[2], 2, random_tracker, "forward", progress=False))
    with pytest.raises(TypeError, match="streamed forwards"):
        propagate(iter(frames), masks[2], 2, random_tracker, "both", progress=False)


def test_errors(random_tracker):
    frames, masks = _square_video()
    with pytest.raises(ValueError, match="out of range"):
        propagate(frames, masks[0], T, random_tracker, progress=False)
    with pytest.raises(ValueError, match="48x64"):
        propagate(frames, masks[0][:, :32], 0, random_tracker, progress=False)
    with pytest.raises(TypeError, match="bool"):
        propagate(frames, masks[0].astype(np.float32), 0, random_tracker, progress=False)
    with pytest.raises(TypeError, match="uint8"):
        propagate(frames.astype(np.float32), masks[0], 0, random_tracker, progress=False)
    with pytest.raises(ValueError, match="direction"):
        propagate(frames, masks[0], 0, random_tracker, direction="sideways", progress=False)
    with pytest.warns(UserWarning, match="empty"):
        out = propagate(frames, np.zeros((H, W), bool), 0, random_tracker, progress=False)
    assert out.shape == (T, H, W) and not out.any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert propagate(frames, masks[-1], -1, random_tracker, "forward", progress=False)[-1].any()


def test_shipped_toy_xmem_tracks_a_moving_object():
    tracker = XMemTracker.toy(TOY_WEIGHTS / TOY_XMEM_FILE)
    frames, masks = _square_video(t=16, h=240, w=320, step=9, seed=3)
    start = 8
    pred = propagate(frames, masks[start], start, tracker, progress=False)
    j = jaccard(pred, masks)
    j_copy = jaccard(np.broadcast_to(masks[start], masks.shape), masks)
    assert j.mean() > 0.8, j
    assert j.mean() > j_copy.mean() + 0.3


def test_track_yields_one_run_frame_by_frame_and_propagate_is_a_loop_over_it(random_tracker):
    from visa_lib.xmem import track

    frames, masks = _square_video()
    steps = list(track(frames, masks[3], 3, random_tracker))
    assert [i for i, _ in steps] == list(range(3, T))
    assert all(p.shape == (2, H, W) and p.dtype == torch.float32 for _, p in steps)
    assert all(torch.allclose(p.sum(0), torch.ones(H, W), atol=1e-5) for _, p in steps)  # background + object
    back = list(track(frames, masks[3], 3, random_tracker, reverse=True))
    assert [i for i, _ in back] == [3, 2, 1, 0]
    fwd = propagate(frames, masks[3], 3, random_tracker, "forward", progress=False)
    for i, p in steps:
        assert np.array_equal(fwd[i], (p.argmax(0) == 1).numpy())
    session = random_tracker.new_session()
    list(track(frames, masks[3], 3, random_tracker, session=session))
    assert len(session.history) == T - 3  # the caller's session did the work
    with pytest.raises(TypeError, match="forwards"):
        next(track(iter(frames), masks[3], 3, random_tracker, reverse=True))
    with pytest.raises(ValueError, match="out of range"):
        next(track(frames, masks[3], T, random_tracker))


def test_packages_export_their_main_names():
    import visa_lib.data as data
    import visa_lib.model as model
    import visa_lib.train as train
    from visa_lib.model.build import build_visa
    from visa_lib.model.merge import spatial_merge

    assert model.build_visa is build_visa and model.spatial_merge is spatial_merge
    assert data.load_revos.__module__ == "visa_lib.data.revos" and callable(train.visa_loss)
    assert "build_visa" in dir(model)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = model.nope
