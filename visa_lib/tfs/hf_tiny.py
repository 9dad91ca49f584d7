"""Tiny, randomly initialised Hugging Face video LLMs, written like a Hub folder without any download.

They exercise :class:`~visa_lib.tfs.hf_video_llm.HFVideoLLMSampler` (``--sampler hf:FOLDER``) exactly
as a real checkpoint would: ``AutoProcessor`` / ``AutoModelForImageTextToText`` load them, the chat
template takes the video, ``generate`` samples. Their answers are random text (they are untrained), so
VISA's parser mostly finds no percentage and ``tp`` falls back to 0.5.

Two families, each built from its own config classes at a few thousand parameters:

* ``"qwen2_vl"``: ``Qwen2VLForConditionalGeneration`` + ``Qwen2VLProcessor`` (3-D patches, M-RoPE);
* ``"llava_onevision"``: ``LlavaOnevisionForConditionalGeneration`` (SigLIP + Qwen2) + its processor.

The tokenizer is a word-level ``tokenizers`` model over the words of VISA's question, the digits and
"%", with the family's special tokens; the chat template is a ChatML template written here.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from visa_lib.tfs.answers import QUESTION_TEMPLATE

FAMILIES = ("qwen2_vl", "llava_onevision")
#: Side of the frames the tiny processors resize to (two 14-px patches).
_SIDE = 28
_SPECIAL = {
    "qwen2_vl": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"],
    "llava_onevision": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
}  # fmt: skip
_VIDEO_SLOT = {"qwen2_vl": "<|vision_start|><|video_pad|><|vision_end|>", "llava_onevision": "<video>"}


def _chat_template(video_slot: str) -> str:
    """A ChatML template whose ``{"type": "video"}`` content items become ``video_slot``."""
    return (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for c in message['content'] %}{% if c['type'] == 'video' %}"
        + video_slot
        + "{% elif c['type'] == "
        "'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


def _tokenizer(special: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = re.findall(r"[a-z]+", QUESTION_TEMPLATE.lower()) + ["user", "assistant", "last", "the", "cat"]
    vocab_list = list(dict.fromkeys([*special, "[UNK]", *"0123456789%?.,'", *words]))
    model = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab_list)}, unk_token="[UNK]"))
    model.normalizer = None
    model.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.Punctuation(),
        ]
    )
    model.decoder = decoders.Fuse()  # "4", "0", "%" -> "40%"
    return PreTrainedTokenizerFast(
        tokenizer_object=model,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="[UNK]",
        additional_special_tokens=special[1:],
    )


def save_tiny_video_llm(folder: str | Path, family: str = "qwen2_vl", seed: int = 0) -> Path:
    """Write a tiny random video LLM of ``family`` (model + processor) into ``folder``.

    Arguments:
        folder (str | Path): output folder (created).
        family (str): ``"qwen2_vl"`` or ``"llava_onevision"``.
        seed (int): seed of the random weights.
    Returns:
        Path: ``folder``, loadable with ``--sampler hf:FOLDER``.
    """
    import transformers as tf

    if family not in FAMILIES:
        raise ValueError(
            f"save_tiny_video_llm: unknown family {family!r}; choose one of {', '.join(FAMILIES)}"
        )
    special = _SPECIAL[family]
    tok = _tokenizer(special)
    ids = {t: tok.convert_tokens_to_ids(t) for t in special}
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    template = _chat_template(_VIDEO_SLOT[family])
    pixels = dict(min_pixels=_SIDE * _SIDE, max_pixels=4 * _SIDE * _SIDE)
    if family == "qwen2_vl":
        processor = tf.Qwen2VLProcessor(
            image_processor=tf.Qwen2VLImageProcessor(**pixels),
            video_processor=tf.Qwen2VLVideoProcessor(**pixels),
            tokenizer=tok,
            chat_template=template,
        )
        rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
        config = tf.Qwen2VLConfig(
            text_config={**text, "rope_parameters": rope, "bos_token_id": ids["<|endoftext|>"]},
            vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2),
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
        )
        model_cls = tf.Qwen2VLForConditionalGeneration
    else:
        size = {"height": _SIDE, "width": _SIDE}
        processor = tf.LlavaOnevisionProcessor(
            image_processor=tf.LlavaOnevisionImageProcessor(
                size=size, crop_size=size, image_grid_pinpoints=[[_SIDE, _SIDE]]
            ),
            video_processor=tf.LlavaOnevisionVideoProcessor(size=size),
            tokenizer=tok,
            num_image_tokens=(_SIDE // 14) ** 2,
            vision_feature_select_strategy="full",
            chat_template=template,
        )
        config = tf.LlavaOnevisionConfig(
            vision_config=dict(
                model_type="siglip_vision_model",
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
                image_size=_SIDE,
                patch_size=14,
            ),
            text_config={**text, "model_type": "qwen2"},
            image_token_index=ids["<image>"],
            video_token_index=ids["<video>"],
            vision_feature_select_strategy="full",
            vision_feature_layer=-1,
            image_grid_pinpoints=[[_SIDE, _SIDE]],
        )
        model_cls = tf.LlavaOnevisionForConditionalGeneration
    torch.manual_seed(seed)
    model = model_cls(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
