"""Train the toy XMem on fresh ReasonVOS-lite clips, on CPU.

XMem's main training stage, shrunk: short clips (``--clip-len`` frames) from videos rendered in memory by
:func:`~visa_lib.data.reasonvos_lite.make_video`; the first frame's ground-truth mask is given, every later
frame is segmented by reading the memory of all earlier frames (dense softmax, as XMem trains) and then
written to memory from its own *predicted* soft mask, so the network learns to recover from its mistakes.
Loss: bootstrapped cross-entropy (hardest pixels, fraction annealed from 100% to 15%) plus soft Dice, plus two
training-only helpers for learning from scratch (see ``aux_loss``): the ground-truth masks carried by the
affinity alone are supervised (label propagation), and large shrinkage is penalised.

Commands that produced the shipped ``data_samples/weights/toy_xmem.safetensors`` (one CPU core, ~45 min;
see benchmarks/README.md, section XMem)::

    OMP_NUM_THREADS=1 python scripts/train_toy_xmem.py --minutes 45 --max-steps 1200 --seed 0 \
        --out /tmp/stage1.safetensors
    OMP_NUM_THREADS=1 python scripts/train_toy_xmem.py --init /tmp/stage1.safetensors --minutes 20 \
        --lr 1e-3 --boundary-p 0.3 --seed 1

The learning rate follows a cosine over the time budget, so reruns differ slightly in step count.
Weights are stored in float16 to keep the file small; they are loaded back into the float32 network.
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from visa_lib.data.reasonvos_lite.generator import make_video
from visa_lib.paths import TOY_WEIGHTS
from visa_lib.xmem import XMem, XMemConfig
from visa_lib.xmem.affinity import get_similarity
from visa_lib.xmem.config import IMAGENET_MEAN, IMAGENET_STD
from visa_lib.xmem.inference import TOY_XMEM_FILE


def _clip_from_video(
    rng: np.random.Generator,
    frames: np.ndarray,
    masks: np.ndarray,
    clip_len: int,
    max_skip: int,
    size: tuple[int, int],
    scale: tuple[int, int],
    boundary_p: float = 0.0,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Pick one object and ``clip_len`` frames (random stride), resize them to ``scale`` (h, w) and cut a
    ``size`` (h, w) crop around the object's first-frame position (jittered), as XMem trains on crops.

    Returns (frames uint8 [T,h,w,3], mask float [T,h,w]) or None if the object is too small in frame 0.
    """
    t = frames.shape[0]
    skip = int(rng.integers(1, max_skip + 1))
    while skip > 1 and (clip_len - 1) * skip >= t:
        skip -= 1
    span = (clip_len - 1) * skip
    start = int(rng.integers(0, t - span))
    idx = start + skip * np.arange(clip_len)
    if rng.random() < 0.5:
        idx = idx[::-1]  # backward clips: propagate() runs backwards as well
    obj = int(rng.integers(0, masks.shape[0]))
    if rng.random() < boundary_p:
        # A clip that starts with the object visible and crosses the frame where it vanishes (forwards) or
        # appears (backwards): the network must learn to predict *nothing* once the object is gone.
        present = masks[obj].reshape(t, -1).any(axis=1)
        changes = np.flatnonzero(present[:-1] != present[1:])
        if len(changes):
            c = int(rng.choice(changes))
            if present[c]:  # vanishes after frame c: forward clip from s <= c, crossing c -> c+1
                lo, hi = max(0, c - span + skip), min(c, t - 1 - span)
                if lo <= hi:
                    idx = int(rng.integers(lo, hi + 1)) + skip * np.arange(clip_len)
            else:  # appears at frame c+1: backward clip from e >= c+1 down past c
                lo, hi = max(c + 1, span), min(c + span, t - 1)
                if lo <= hi:
                    idx = int(rng.integers(lo, hi + 1)) - skip * np.arange(clip_len)
    m = masks[obj, idx]
    if m[0].sum() < 30:
        return None
    sh, sw = scale
    f = np.stack([cv2.resize(frames[i], (sw, sh), interpolation=cv2.INTER_AREA) for i in idx])
    mm = np.stack([cv2.resize(x.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA) for x in m])
    h, w = size
    ys, xs = np.nonzero(mm[0] > 0.5)
    if len(ys) == 0:
        return None
    cy = ys.mean() + rng.uniform(-0.25, 0.25) * h
    cx = xs.mean() + rng.uniform(-0.25, 0.25) * w
    y0 = int(np.clip(round(cy - h / 2), 0, sh - h))
    x0 = int(np.clip(round(cx - w / 2), 0, sw - w))
    f, mm = f[:, y0 : y0 + h, x0 : x0 + w], mm[:, y0 : y0 + h, x0 : x0 + w]
    if rng.random() < 0.5:
        f, mm = f[:, :, ::-1], mm[:, :, ::-1]
    mm = (np.ascontiguousarray(mm) > 0.5).astype(np.float32)
    if mm[0].sum() < 20:
        return None
    return np.ascontiguousarray(f), mm


class ClipProducer:
    """Renders videos in a background thread and serves random clips from a rolling pool."""

    def __init__(
        self,
        seed: int,
        clip_len: int,
        max_skip: int,
        size: tuple[int, int],
        scale: tuple[int, int],
        boundary_p: float = 0.0,
        pool: int = 64,
        pause: float = 2.0,
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.video_rng = np.random.default_rng(seed + 1)
        self.clip_len, self.max_skip, self.size, self.scale = clip_len, max_skip, size, scale
        self.boundary_p = boundary_p
        self.pool: deque = deque(maxlen=pool)
        self.lock = threading.Lock()
        self.stop = False
        self.pause = pause
        self.videos_made = 0
        for _ in range(8):
            self._make_one()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _make_one(self) -> None:
        frames, masks, _ = make_video(self.video_rng)
        with self.lock:
            self.pool.append((frames, masks))
            self.videos_made += 1

    def _run(self) -> None:
        while not self.stop:
            self._make_one()
            time.sleep(self.pause)  # rendering costs ~0.25 s/video: leave the core to the trainer

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """frames float normalised [B,T,3,h,w], masks float [B,T,1,h,w]."""
        out_f, out_m = [], []
        while len(out_f) < batch_size:
            with self.lock:
                frames, masks = self.pool[int(self.rng.integers(0, len(self.pool)))]
            clip = _clip_from_video(
                self.rng, frames, masks, self.clip_len, self.max_skip, self.size, self.scale, self.boundary_p
            )
            if clip is not None:
                out_f.append(clip[0])
                out_m.append(clip[1])
        f = torch.from_numpy(np.stack(out_f)).permute(0, 1, 4, 2, 3).float().div_(255)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
        return (f - mean) / std, torch.from_numpy(np.stack(out_m)).unsqueeze(2)


def clip_forward(
    net: XMem, frames: torch.Tensor, masks: torch.Tensor, deep_update_p: float, rng: np.random.Generator
) -> list[torch.Tensor]:
    """XMem's training-time forward on a batch of clips.

    Args:
        net: the network (train mode).
        frames: ``[B, T, 3, H, W]`` normalised, H, W multiples of 16.
        masks: ``[B, T, 1, H, W]`` ground truth; only frame 0 is read.
        deep_update_p: chance that a memory write also updates the sensory memory via the value encoder.
        rng: for the deep-update coin flips.

    Returns:
        (logits, aux): logits ``[B, 2, H, W]`` (background, object) for frames 1..T-1, and the auxiliary
        terms -- the ground-truth masks carried to each query frame by the affinity alone (1/16 resolution,
        ``[B, h*w]`` with its target) and the shrinkage of the memory frames.
    """
    b, t = frames.shape[:2]
    key, shrinkage, selection, f16, f8, f4 = net.encode_key(frames.flatten(0, 1))
    unflat = lambda x: x.view(b, t, *x.shape[1:])  # noqa: E731
    key, shrinkage, selection = unflat(key), unflat(shrinkage), unflat(selection)
    f16, f8, f4 = unflat(f16), unflat(f8), unflat(f4)
    h16, w16 = key.shape[-2:]
    hidden = torch.zeros(b, 1, net.hidden_dim, h16, w16)
    value, hidden = net.encode_value(frames[:, 0], f16[:, 0], hidden, masks[:, 0])
    mem_k, mem_s, mem_v = [key[:, 0].flatten(2)], [shrinkage[:, 0].flatten(2)], [value[:, 0].flatten(2)]
    m16 = F.adaptive_avg_pool2d(masks[:, :, 0], (h16, w16)).flatten(2)  # [B, T, h*w] ground truth at 1/16
    outs = []
    aux: dict[str, list[torch.Tensor]] = {"carried": [], "target": [], "shrinkage": [shrinkage]}
    for i in range(1, t):
        mk, ms, mv = torch.cat(mem_k, -1), torch.cat(mem_s, -1), torch.cat(mem_v, -1)
        sim = get_similarity(mk, ms, key[:, i].flatten(2), selection[:, i].flatten(2))
        affinity = torch.softmax(sim, dim=1)  # dense during training, as XMem does
        readout = (mv @ affinity).view(b, 1, -1, h16, w16)
        # label propagation: what the affinity alone says about the query frame's mask
        aux["carried"].append((m16[:, :i].flatten(1).unsqueeze(1) @ affinity).squeeze(1))
        aux["target"].append(m16[:, i])
        hidden, logits, prob = net.segment(
            (f16[:, i], f8[:, i], f4[:, i]), readout, hidden, h_out=True, strip_bg=False
        )
        outs.append(logits)
        if i < t - 1:
            deep = bool(rng.random() < deep_update_p)
            value, hidden = net.encode_value(
                frames[:, i], f16[:, i], hidden, prob[:, 1:], is_deep_update=deep
            )
            mem_k.append(key[:, i].flatten(2))
            mem_s.append(shrinkage[:, i].flatten(2))
            mem_v.append(value[:, 0].flatten(2))
    return outs, aux


#: Weights of the auxiliary terms: label propagation through the affinity (teaches the keys directly, which
#: matters when they are learnt from scratch) and a penalty that keeps the shrinkage from exploding (without
#: it the toy learns near-one-hot attention early and the keys stop receiving gradient).
AUX_PROPAGATION_WEIGHT = 1.0
SHRINKAGE_PENALTY = 0.01


def aux_loss(aux: dict[str, list[torch.Tensor]]) -> torch.Tensor:
    """BCE of the affinity-carried masks + a quadratic penalty on ``shrinkage - 1``."""
    carried = torch.stack(aux["carried"]).clamp(1e-4, 1 - 1e-4)
    target = torch.stack(aux["target"])
    shrink = aux["shrinkage"][0]
    return (
        AUX_PROPAGATION_WEIGHT * F.binary_cross_entropy(carried, target)
        + SHRINKAGE_PENALTY * ((shrink - 1) ** 2).mean()
    )


def clip_loss(outs: list[torch.Tensor], masks: torch.Tensor, top_p: float) -> torch.Tensor:
    """Bootstrapped CE (mean of the hardest ``top_p`` fraction of pixels) + soft Dice, mean over frames."""
    total = 0.0
    for i, logits in enumerate(outs, start=1):
        target = masks[:, i, 0].long()
        ce = F.cross_entropy(logits, target, reduction="none").flatten()
        if top_p < 1:
            ce = torch.topk(ce, k=max(1, int(ce.numel() * top_p))).values
        prob = torch.softmax(logits, dim=1)[:, 1]
        gt = masks[:, i, 0]
        dice = 1 - (2 * (prob * gt).sum((1, 2)) + 1) / (prob.sum((1, 2)) + gt.sum((1, 2)) + 1)
        total = total + ce.mean() + dice.mean()
    return total / len(outs)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=50.0, help="training wall-time budget")
    ap.add_argument("--max-steps", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--clip-len", type=int, default=6)
    ap.add_argument("--max-skip", type=int, default=3)
    ap.add_argument("--height", type=int, default=128, help="training crop height (multiple of 16)")
    ap.add_argument("--width", type=int, default=160, help="training crop width (multiple of 16)")
    ap.add_argument(
        "--scale",
        type=int,
        default=192,
        help="frames are first resized to this shorter side (= MemoryConfig.toy().size)",
    )
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument(
        "--boundary-p",
        type=float,
        default=0.0,
        help="share of clips that cross the frame where the object vanishes / appears",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=TOY_WEIGHTS / TOY_XMEM_FILE)
    ap.add_argument("--init", type=Path, default=None, help="continue from these weights")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    net = XMem.from_checkpoint(args.init) if args.init else XMem(XMemConfig.toy())
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    from visa_lib.data.reasonvos_lite.generator import HEIGHT, WIDTH

    scale = (args.scale, round(args.scale * WIDTH / HEIGHT))  # ReasonVOS-lite is 240 x 320
    producer = ClipProducer(
        args.seed, args.clip_len, args.max_skip, (args.height, args.width), scale, args.boundary_p
    )
    budget = args.minutes * 60
    t0 = time.time()
    bar = tqdm(total=args.max_steps, desc="toy XMem", mininterval=10)
    step, ema = 0, None
    while step < args.max_steps:
        frac = min(1.0, (time.time() - t0) / budget)
        if frac >= 1.0:
            break
        lr = args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac))) * min(1.0, (step + 1) / 100)
        for g in opt.param_groups:
            g["lr"] = lr
        frames, masks = producer.batch(args.batch)
        outs, aux = clip_forward(net, frames, masks, deep_update_p=0.2, rng=rng)
        loss = clip_loss(outs, masks, top_p=max(0.15, 1 - 1.5 * frac)) + aux_loss(aux)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        bar.update(1)
        if step % 50 == 0:
            print(
                f"step {step} t={time.time() - t0:.0f}s lr={lr:.2e} loss(ema)={ema:.4f} "
                f"videos={producer.videos_made}",
                flush=True,
            )
        if step % 200 == 0:
            _save(net, args.out)
    producer.stop = True
    bar.close()
    _save(net, args.out)
    print(f"done: {step} steps in {time.time() - t0:.0f}s -> {args.out}", flush=True)


def _save(net: XMem, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in net.state_dict().items()}
    save_file(sd, str(path), metadata={"format": "pt", "model": "toy XMem (visa_lib.xmem)"})


if __name__ == "__main__":
    main()
