"""A LLaMA-VID-style video LLM that answers the TFS question, and its ``FrameSampler`` backend.

LLaMA-VID represents every frame by TWO tokens (docs/pipeline.md):

* a **context** token, text-conditioned: queries ``Q`` derived from the user's text attend over
  the frame's visual tokens ``X`` and the attended features are averaged over the queries,
  ``E_ctx = mean_m softmax(Q X^T / sqrt(C)) X``, then projected to the LLM width;
* a **content** token: the frame's visual tokens average-pooled to one token, then projected.

The 2 N frame tokens go in one ``<image>`` slot of LLaMA-VID's movie prompt (vicuna_v1 template)::

    {system} USER: Below is a movie. Memorize ... this movie.<image>Now the movie end.
    {TFS question} ASSISTANT: 40%</s>

and answers are SAMPLED (temperature 0.6, top-p 0.9), K = 10 times per expression.

Our simplifications (toy rung): the queries are the expression's token embeddings mapped to the
vision width by one linear layer (LLaMA-VID uses a BERT Q-Former on the instruction); the visual
tokens are the frozen toy CLIP tower's 256 patch tokens average-pooled to an 8 x 8 grid for the
context attention (the content token pools all of them); the LLM is a tiny ``LlamaForCausalLM``
with the toy word-level tokenizer. ``"llama-vid-13b"`` is the same architecture at LLaMA-VID-13B's
sizes (Vicuna-13B LLM, EVA-G width 1408); loading the released LLaMA-VID checkpoint into it is not
implemented (its Q-Former has no counterpart here).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from visa_lib.model.prompts import IMAGE_TOKEN, IMAGE_TOKEN_INDEX
from visa_lib.model.vision import VisionTower, build_vision_tower
from visa_lib.paths import TOY_WEIGHTS
from visa_lib.tfs.answers import NUM_ANSWERS, build_tfs_question
from visa_lib.tfs.samplers import FrameSampler, subsample  # noqa: F401  (subsample: re-exported)

#: Default location of the toy sampler's weights (metadata: config and tokenizer vocabulary).
TOY_TFS_WEIGHTS = TOY_WEIGHTS / "toy_tfs.safetensors"

#: LLaMA-VID's conversation (``vicuna_v1``) and movie wrapper.
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
MOVIE_INTRO = "Below is a movie. Memorize the content and answer my question after watching this movie."
MOVIE_END = "Now the movie end."
#: Sampling settings of VISA's LLaMA-VID server.
TEMPERATURE = 0.6
TOP_P = 0.9


def build_tfs_prompt(expression: str, answer: str | None = None) -> str:
    """The full LLaMA-VID prompt for one expression; with ``answer``, the teacher-forced target.

    Arguments:
        expression (str): the query.
        answer (str | None): e.g. ``"40%"`` for training; None leaves the assistant turn open.
    """
    movie = f"{MOVIE_INTRO}{IMAGE_TOKEN}{MOVIE_END}"
    prompt = f"{VICUNA_SYSTEM} USER: {movie}\n{build_tfs_question(expression)} ASSISTANT:"
    return prompt if answer is None else f"{prompt} {answer}</s>"


@dataclass
class VideoLLMConfig:
    """Sizes of the video LLM.

    Attributes:
        vision: name for :func:`build_vision_tower` (``"toy"``); ``"eva-vit-g"`` is descriptive only.
        vision_width: channel width of the visual tokens.
        hidden_size, intermediate_size, num_layers, num_heads: the LLaMA decoder.
        vocab_size: tokenizer size (0 = take it from the tokenizer).
        max_position: longest sequence.
        context_grid: visual tokens are pooled to ``grid x grid`` before the context attention.
        max_frames: longer videos are subsampled uniformly to this many frames.
    """

    vision: str = "toy"
    vision_width: int = 128
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    vocab_size: int = 0
    max_position: int = 512
    context_grid: int = 8
    max_frames: int = 64


#: Size registry.
VIDEO_LLM_CONFIGS: dict[str, VideoLLMConfig] = {
    "toy": VideoLLMConfig(),
    "llama-vid-13b": VideoLLMConfig(
        vision="eva-vit-g",
        vision_width=1408,
        hidden_size=5120,
        intermediate_size=13824,
        num_layers=40,
        num_heads=40,
        vocab_size=32000,
        max_position=4096,
        context_grid=16,
        max_frames=300,
    ),
}


class VideoLLM(nn.Module):
    """Frame compressor (2 tokens per frame) + LLaMA decoder.

    Arguments:
        config (VideoLLMConfig): sizes; ``vocab_size`` must be set.
    """

    def __init__(self, config: VideoLLMConfig) -> None:
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError("VideoLLM: config.vocab_size must be set (len(tokenizer))")
        self.config = config
        h, c = config.hidden_size, config.vision_width
        self.llm = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=config.vocab_size,
                hidden_size=h,
                intermediate_size=config.intermediate_size,
                num_hidden_layers=config.num_layers,
                num_attention_heads=config.num_heads,
                num_key_value_heads=config.num_heads,
                max_position_embeddings=config.max_position,
                tie_word_embeddings=False,
            )
        )
        self.text_query = nn.Linear(h, c)
        self.context_proj = nn.Sequential(nn.Linear(c, h), nn.GELU(), nn.Linear(h, h))
        self.content_proj = nn.Sequential(nn.Linear(c, h), nn.GELU(), nn.Linear(h, h))

    def pool_patches(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        """Average-pool a square patch grid: ``[T, g0*g0, C]`` -> ``[T, grid*grid, C]``."""
        t, n, c = patch_tokens.shape
        g0 = int(round(n**0.5))
        grid = self.config.context_grid
        if g0 == grid:
            return patch_tokens
        x = patch_tokens.transpose(1, 2).reshape(t, c, g0, g0)
        return F.adaptive_avg_pool2d(x.float(), grid).flatten(2).transpose(1, 2).to(patch_tokens.dtype)

    def frame_tokens(self, visual: torch.Tensor, query_ids: torch.Tensor) -> torch.Tensor:
        """Two tokens per frame, interleaved ``[ctx_0, content_0, ctx_1, ...]``.

        Arguments:
            visual (torch.Tensor): pooled visual tokens ``[T, P, C]``.
            query_ids (torch.Tensor): long ``[M]``, the expression's token ids.

        Returns:
            torch.Tensor: ``[2T, H]``.
        """
        visual = visual.float()
        queries = self.text_query(self.llm.get_input_embeddings()(query_ids))  # [M, C]
        attn = torch.softmax(torch.einsum("mc,tpc->tmp", queries, visual) / visual.shape[-1] ** 0.5, dim=-1)
        context = torch.einsum("tmp,tpc->tmc", attn, visual).mean(1)  # [T, C]
        tokens = torch.stack([self.context_proj(context), self.content_proj(visual.mean(1))], dim=1)
        return tokens.reshape(-1, tokens.shape[-1])

    def embed(self, prompt_ids: Sequence[int], video_tokens: torch.Tensor) -> torch.Tensor:
        """Input embeddings of a prompt whose single ``<image>`` slot holds ``video_tokens [2T, H]``."""
        ids = torch.as_tensor(list(prompt_ids), device=video_tokens.device)
        slots = (ids == IMAGE_TOKEN_INDEX).nonzero().flatten()
        if len(slots) != 1:
            raise ValueError(
                f"VideoLLM.embed: the prompt must hold exactly one {IMAGE_TOKEN}, found {len(slots)}"
            )
        s = int(slots[0])
        table = self.llm.get_input_embeddings()
        return torch.cat([table(ids[:s]), video_tokens.to(table.weight.dtype), table(ids[s + 1 :])])


def _top_p_sample(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> torch.Tensor:
    """Nucleus sampling: ``logits [B, V]`` -> ``[B]`` token ids (at least the top token is kept)."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    drop = sorted_probs.cumsum(-1) - sorted_probs > top_p
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    pick = torch.multinomial(sorted_probs.cpu(), 1, generator=generator).to(order.device)
    return order.gather(1, pick).squeeze(1)


class VideoLLMSampler(FrameSampler):
    """TFS backend: a :class:`VideoLLM` answering the question by sampling.

    The video is encoded once (:meth:`encode`: at most ``config.max_frames`` frames through the
    frozen tower, pooled); each query then samples its K answers in one batch from a generator
    seeded by the query's own text.

    Arguments:
        model (VideoLLM): the trained video LLM.
        tokenizer: its tokenizer (the toy word-level one on the toy rung).
        tower (VisionTower): the frozen vision tower producing the visual tokens.
        temperature (float), top_p (float): sampling settings (VISA: 0.6, 0.9).
        max_new_tokens (int): generation budget per answer.
        seed (int): seed of the sampling (mixed with each query's text).
        num_answers (int): K (VISA: 10).
    """

    name = "video_llm"

    def __init__(
        self,
        model: VideoLLM,
        tokenizer,
        tower: VisionTower,
        temperature: float = TEMPERATURE,
        top_p: float = TOP_P,
        max_new_tokens: int = 6,
        seed: int = 0,
        num_answers: int = NUM_ANSWERS,
    ) -> None:
        super().__init__(num_answers=num_answers, max_frames=model.config.max_frames, seed=seed)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tower = tower
        self.temperature = temperature
        self.top_p = top_p
        self.max_new_tokens = max_new_tokens

    @torch.no_grad()
    def encode(self, frames, indices: np.ndarray) -> torch.Tensor:
        """The shown frames ``uint8 [T, H, W, 3]`` -> pooled visual tokens ``[T, P, C]``."""
        shown = np.stack([frames[int(i)] for i in indices])
        return self.model.pool_patches(self.tower.encode_frames(shown))

    @torch.no_grad()
    def draw(self, video: torch.Tensor, text: str, num_answers: int, seed: int, gt_masks=None) -> list[str]:
        """Sample ``num_answers`` answers given the visual tokens ``[T, P, C]`` from :meth:`encode`."""
        from visa_lib.model.tokenizer import tokenize_prompt

        tok = self.tokenizer
        generator = torch.Generator().manual_seed(seed)
        device = self.model.llm.get_input_embeddings().weight.device
        visual = video.to(device)
        prompt_ids = tokenize_prompt(tok, build_tfs_prompt(text))
        query = torch.as_tensor(tok(text, add_special_tokens=False).input_ids, device=device)
        emb = self.model.embed(prompt_ids, self.model.frame_tokens(visual, query))
        emb = emb[None].expand(num_answers, -1, -1)
        out = self.model.llm(inputs_embeds=emb, use_cache=True)
        cache, logits = out.cache, out.logits[:, -1]
        tokens = torch.empty(num_answers, 0, dtype=torch.long, device=device)
        done = torch.zeros(num_answers, dtype=torch.bool, device=device)
        for _ in range(self.max_new_tokens):
            nxt = _top_p_sample(logits, self.temperature, self.top_p, generator)
            nxt = torch.where(done, torch.full_like(nxt, tok.eos_token_id), nxt)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            done |= nxt == tok.eos_token_id
            if bool(done.all()):
                break
            out = self.model.llm(input_ids=nxt[:, None], cache=cache, use_cache=True)
            cache, logits = out.cache, out.logits[:, -1]
        return [decode_answer(tok, row) for row in tokens.tolist()]


def decode_answer(tokenizer, ids: Sequence[int]) -> str:
    """Join generated tokens up to ``</s>``; the toy tokenizer splits "40%" into "4", "0", "%"."""
    pieces = []
    for i in ids:
        if i == tokenizer.eos_token_id:
            break
        pieces.append(tokenizer.convert_ids_to_tokens(int(i)))
    return "".join(pieces)


def save_video_llm(model: VideoLLM, vocab: list[str], path: str | Path, summary: dict | None = None) -> None:
    """Save weights with the config, tokenizer vocabulary and a training summary as metadata."""
    from safetensors.torch import save_file

    meta = {"config": json.dumps(asdict(model.config)), "vocab": json.dumps(vocab)}
    if summary is not None:
        meta["summary"] = json.dumps(summary)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata dict stored in a safetensors file."""
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


#: Sampler names :func:`build_frame_sampler` knows (``hf:`` and ``tpfile:`` take a value after the colon).
SAMPLER_NAMES = ("toy", "uniform", "first_frame", "oracle", "hf:<model id or folder>", "tpfile:<file>")


def build_frame_sampler(
    name: str = "toy",
    weights: str | Path | None = None,
    seed: int = 0,
    num_answers: int = NUM_ANSWERS,
    device: str | torch.device = "cpu",
) -> FrameSampler:
    """Build a TFS backend by name.

    Arguments:
        name (str): ``"toy"`` (the shipped toy video LLM), ``"uniform"``, ``"first_frame"``, ``"oracle"``,
            ``"hf:<id or folder>"`` (a Hugging Face video LLM, :mod:`visa_lib.tfs.hf_video_llm`) or
            ``"tpfile:<file>"`` (``tp`` per expression read from VISA's published file,
            :mod:`visa_lib.tfs.tp_file`).
        weights (str | Path | None): toy weights file (default: ``data_samples/weights/toy_tfs.safetensors``).
        seed (int): seed of the sampling (mixed with each query's text).
        num_answers (int): K, answers per query.
        device (str | torch.device): where a video LLM runs (the toy one always runs on the CPU).

    Returns:
        FrameSampler: the backend.
    """
    from visa_lib.model.tokenizer import build_toy_tokenizer
    from visa_lib.tfs.samplers import FirstFrameSampler, OracleSampler, UniformSampler

    simple = {"uniform": UniformSampler, "first_frame": FirstFrameSampler, "oracle": OracleSampler}
    if name in simple:
        return simple[name](num_answers=num_answers, seed=seed)
    kind, _, value = name.partition(":")
    if kind == "hf" and value:
        from visa_lib.tfs.hf_video_llm import HFVideoLLMSampler

        return HFVideoLLMSampler.from_pretrained(value, device=device, seed=seed, num_answers=num_answers)
    if kind == "tpfile" and value:
        from visa_lib.tfs.tp_file import TpFileSampler

        return TpFileSampler(value)
    if name != "toy":
        raise ValueError(
            f"build_frame_sampler: unknown name {name!r}; choose one of {', '.join(SAMPLER_NAMES)}"
        )
    path = Path(weights) if weights is not None else TOY_TFS_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"toy TFS weights {path} are missing; run `python scripts/train_toy_tfs.py`")
    meta = read_metadata(path)
    if "config" not in meta or "vocab" not in meta:
        raise KeyError(f"{path}: no config/vocab metadata; was it written by scripts/train_toy_tfs.py?")
    config = VideoLLMConfig(**json.loads(meta["config"]))
    model = VideoLLM(config)
    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise KeyError(f"{path}: missing keys {missing[:8]}, unexpected keys {unexpected[:8]}")
    tokenizer = build_toy_tokenizer(vocab=json.loads(meta["vocab"]))
    return VideoLLMSampler(
        model, tokenizer, build_vision_tower(config.vision), seed=seed, num_answers=num_answers
    )
