"""The memory schedule: memory frames, working memory growth, consolidation, long-term cap, usage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visa_lib.xmem import MemoryConfig, MemoryManager, XMem, XMemConfig, XMemTracker
from visa_lib.xmem.memory_store import KeyValueMemoryStore
from visa_lib.xmem.processing import normalize_frame

H, W = 96, 128  # 6 x 8 = 48 memory elements per frame: >= top_k 30, and 5 * 48 >= 128 prototypes
HW = 48


@pytest.fixture(scope="module")
def toy_net() -> XMem:
    torch.manual_seed(0)
    return XMem(XMemConfig.toy()).eval()


def _video(t: int, h: int = H, w: int = W) -> tuple[list[torch.Tensor], torch.Tensor]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    frames = [normalize_frame(np.roll(base, 2 * i, axis=1), -1) for i in range(t)]
    mask = torch.zeros(1, h, w)
    mask[0, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
    return frames, mask


def _run(net: XMem, cfg: MemoryConfig, t: int, h: int = H, w: int = W):
    session = XMemTracker(net, cfg).new_session(t)
    frames, mask = _video(t, h, w)
    probs = [session.step(f, mask if i == 0 else None, end=(i == t - 1)) for i, f in enumerate(frames)]
    return session, probs


@pytest.fixture(scope="module")
def official_run(toy_net):
    """80 frames through the official memory schedule (toy widths, native 96x128 resolution)."""
    return _run(toy_net, MemoryConfig.official().with_(size=-1), 80)


def test_schedule_matches_xmem_trace(official_run):
    session, probs = official_run
    mem_frames = [i for i, (is_mem, _) in enumerate(session.history) if is_mem]
    assert mem_frames == list(range(0, 79, 5))  # mask frame, then every 5th; the last frame never
    work = [s["work_frames"] for _, s in session.history]
    long = [s["long_elements"] for _, s in session.history]
    # working memory grows 1 -> 9 frames; the 10th memory frame (t=45) triggers consolidation -> 5 frames
    assert [work[t] for t in (0, 5, 40, 44, 45, 50, 65, 69, 70, 79)] == [1, 2, 9, 9, 5, 6, 9, 9, 5, 6]
    assert [long[t] for t in (44, 45, 69, 70, 79)] == [0, 128, 128, 256, 256]
    assert session.memory.consolidations == 2
    assert all(p.shape == (2, H, W) for p in probs)
    assert torch.allclose(probs[0][1], _video(1)[1][0], atol=1e-6)  # the given frame returns the given mask


def test_annotated_frame_is_never_consolidated(toy_net, official_run):
    session, _ = official_run
    frames, _ = _video(1)
    with torch.inference_mode():
        key0 = toy_net.encode_key(frames[0][None])[0]
    assert session.memory.consolidations == 2
    assert torch.allclose(session.memory.work_mem.key[:, :, :HW], key0.flatten(2), atol=1e-5)


def test_long_video_memory_is_bounded(toy_net):
    # 64x80 frames: 4 x 5 = 20 elements each; 64 prototypes per consolidation, long-term capped at 200
    cfg = MemoryConfig.official().with_(
        size=-1, num_prototypes=64, max_long_term_elements=200, count_long_term_usage=True
    )
    session, probs = _run(toy_net, cfg, 200, 64, 80)
    stats = [s for _, s in session.history]
    assert max(s["long_elements"] for s in stats) == 200 - 64 + 64  # cap reached, then held
    assert stats[-1]["long_elements"] <= 200
    assert max(s["work_elements"] for s in stats) <= 10 * 20
    assert session.memory.consolidations == 7  # 40 memory frames: at the 10th, 15th, ..., 40th
    assert all(torch.isfinite(p).all() for p in probs)


def test_usage_counts_reads():
    store = KeyValueMemoryStore(count_usage=True)
    store.add(torch.zeros(1, 2, 3), torch.zeros(1, 4, 3), torch.ones(1, 1, 3), None)
    store.update_usage(torch.tensor([1.0, 0.0, 2.0]))
    store.update_usage(torch.tensor([1.0, 1.0, 0.0]))
    assert torch.allclose(store.get_usage(), torch.tensor([[2.0, 1.0, 2.0]]) / (2 + 1e-7))
    store.remove_obsolete_features(2)  # drops the least used element
    assert store.size == 2 and torch.allclose(store.use_count.flatten(), torch.tensor([2.0, 2.0]))


def test_consolidation_prototypes_by_hand():
    mm = MemoryManager(MemoryConfig(num_prototypes=2), hidden_dim=0)
    key = torch.tensor([[[0.0, 1.0, 5.0, 6.0]]])  # C=1, M=4 candidates
    shrink = torch.ones(1, 1, 4)
    sel = torch.ones(1, 1, 4)
    usage = torch.tensor([[0.1, 0.9, 0.2, 0.5]])
    value = torch.tensor([[[10.0, 20.0, 30.0, 40.0]]])
    p_key, p_value, p_shrink = mm.consolidation(key, shrink, sel, usage, value)
    assert torch.equal(p_key.flatten(), torch.tensor([1.0, 6.0]))  # raw keys of the 2 most used candidates
    # value of prototype "1.0": dense softmax over candidates of -(k - 1)^2
    w = torch.softmax(-((key.flatten() - 1.0) ** 2), 0)
    assert torch.allclose(p_value[0, 0, 0], (w * value.flatten()).sum())
    assert torch.allclose(p_shrink, torch.ones(1, 1, 2))


def test_long_term_usage_rule():
    cfg = MemoryConfig.official()
    assert not cfg.long_term_usage_for(390) and cfg.long_term_usage_for(391)
    assert cfg.long_term_usage_for(None)
    assert not cfg.with_(enable_long_term=False).long_term_usage_for(5000)


def test_without_long_term_memory_grows(toy_net):
    session, _ = _run(toy_net, MemoryConfig.official().with_(size=-1, enable_long_term=False), 58, 64, 80)
    assert session.history[-1][1]["work_frames"] == 12 and session.history[-1][1]["long_elements"] == 0
