"""A frame sampler on a Hugging Face video LLM (Qwen2-VL / Qwen2.5-VL, LLaVA-OneVision, SmolVLM2 ...).

VISA's frame sampler is LLaMA-VID-13B, which has no ``transformers`` class. Any chat model that
``transformers`` loads with ``AutoModelForImageTextToText`` and whose processor accepts ``videos=``
can ask VISA's question instead (docs/predict.md):

* the prompt is the model's own chat template applied to one user turn holding the video and VISA's
  exact TFS question (:func:`visa_lib.tfs.build_tfs_question`);
* K = 10 answers are sampled with VISA's settings: ``do_sample=True, temperature=0.6, top_p=0.9`` and
  ``top_k=50`` (``transformers``' default, which LLaMA-VID's server ran with; instruction models often
  ship a ``generation_config`` with other values, e.g. ``top_k=1``, so the settings are given in full);
* each answer is parsed with VISA's first-match rule and averaged into ``tp``.

The video is read once per video (at most ``max_frames`` frames, spread uniformly) and reused for
every query; the processor and the vision encoder run inside each query's ``generate`` call.

    visa predict revos --data-root ReVOS --out pred --sampler hf:Qwen/Qwen2.5-VL-7B-Instruct --device cuda
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from visa_lib.tfs.answers import NUM_ANSWERS, build_tfs_question
from visa_lib.tfs.samplers import FrameSampler
from visa_lib.tfs.video_llm import TEMPERATURE, TOP_P

#: ``transformers``' default ``top_k``, in effect in LLaMA-VID's server (it did not set one).
TOP_K = 50
#: Frames shown to a Hugging Face video LLM by default (they spend far more tokens per frame than
#: LLaMA-VID's two; raise it on a large GPU).
HF_MAX_FRAMES = 32


class HFVideoLLMSampler(FrameSampler):
    """TFS backend: a ``transformers`` image-text-to-text model answering VISA's question about a video.

    Arguments:
        model: an ``AutoModelForImageTextToText`` model.
        processor: its ``AutoProcessor`` (chat template + video processor).
        num_answers (int): K (VISA: 10).
        max_frames (int): frames shown at most.
        seed (int): seed of the sampling (mixed with each query's text).
        temperature (float), top_p (float), top_k (int): VISA's sampling settings.
        max_new_tokens (int): generation budget per answer (VISA: 1024; answers are a few tokens).
    """

    name = "hf_video_llm"

    def __init__(
        self,
        model,
        processor,
        *,
        num_answers: int = NUM_ANSWERS,
        max_frames: int = HF_MAX_FRAMES,
        seed: int = 0,
        temperature: float = TEMPERATURE,
        top_p: float = TOP_P,
        top_k: int = TOP_K,
        max_new_tokens: int = 64,
    ) -> None:
        super().__init__(num_answers=num_answers, max_frames=max_frames, seed=seed)
        self.model = model.eval()
        self.processor = processor
        self.sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k)
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        **kwargs,
    ) -> HFVideoLLMSampler:
        """Load a model id of the Hugging Face Hub or a local folder (``save_pretrained`` layout).

        Arguments:
            name_or_path (str | Path): e.g. ``"Qwen/Qwen2.5-VL-7B-Instruct"`` or a folder.
            device (str | torch.device): where the model runs.
            dtype (torch.dtype | None): default bfloat16 on CUDA, float32 elsewhere.
            **kwargs: passed to the constructor (``num_answers``, ``max_frames``, ``seed`` ...).
        """
        from transformers import AutoModelForImageTextToText, AutoProcessor

        device = torch.device(device)
        if dtype is None:
            dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        try:
            processor = AutoProcessor.from_pretrained(str(name_or_path))
            model = AutoModelForImageTextToText.from_pretrained(str(name_or_path), dtype=dtype)
        except (OSError, ValueError) as err:
            raise FileNotFoundError(
                f"--sampler hf:{name_or_path}: cannot load it as an image-text-to-text model with a "
                f"processor ({str(err).splitlines()[0]}); give a Hub id or a save_pretrained folder"
            ) from None
        return cls(model.to(device), processor, **kwargs)

    def prompt(self, text: str) -> str:
        """The model's chat template around one user turn: the video, then VISA's question."""
        messages = [
            {
                "role": "user",
                "content": [{"type": "video"}, {"type": "text", "text": build_tfs_question(text)}],
            }
        ]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def encode(self, frames, indices: np.ndarray) -> np.ndarray:
        """The shown frames, ``uint8 [T, H, W, 3]`` (the processor resizes them per model)."""
        return np.stack([frames[int(i)] for i in indices])

    @torch.no_grad()
    def draw(self, video: np.ndarray, text: str, num_answers: int, seed: int, gt_masks=None) -> list[str]:
        """``num_answers`` sampled answers to VISA's question about ``text``, decoded to strings."""
        from transformers import GenerationConfig

        device = next(self.model.parameters()).device
        inputs = self.processor(text=[self.prompt(text)], videos=[video], return_tensors="pt").to(device)
        defaults = self.model.generation_config
        config = GenerationConfig(
            **self.sampling,
            max_new_tokens=self.max_new_tokens,
            num_return_sequences=num_answers,
            eos_token_id=defaults.eos_token_id,
            pad_token_id=defaults.pad_token_id
            if defaults.pad_token_id is not None
            else defaults.eos_token_id,
        )
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the query's own seed; the global RNG is untouched
            torch.manual_seed(seed)
            out = self.model.generate(**inputs, generation_config=config)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return [a.strip() for a in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]
