"""Text-guided Frame Sampler (TFS): which frame of the video should VISA segment first?

``answers``: the exact question, VISA's parsing rules, ``aggregate`` into ``tp`` and
``target_frame``; ``samplers``: the ``FrameSampler`` interface (``choose(frames, texts)``) with
baseline and oracle backends; ``video_llm``: a LLaMA-VID-style video LLM backend (toy weights
shipped) and ``build_frame_sampler``; ``hf_video_llm``: any Hugging Face video LLM (``hf:<id>``);
``tp_file``: ``tp`` read from VISA's published file (``tpfile:<file>``); ``evaluate``: how often the
chosen frame shows the target.
"""

from visa_lib.tfs.answers import (
    FALLBACK_TP,
    NUM_ANSWERS,
    PERCENT_PATTERNS,
    QUESTION_TEMPLATE,
    aggregate,
    build_tfs_question,
    oracle_frame,
    oracle_tp,
    parse_percentage,
    percentage_answer,
    target_frame,
)
from visa_lib.tfs.hf_video_llm import HFVideoLLMSampler
from visa_lib.tfs.samplers import (
    SAMPLER_MAX_FRAMES,
    FirstFrameSampler,
    FrameSampler,
    OracleSampler,
    TFSResult,
    UniformSampler,
    query_seed,
)
from visa_lib.tfs.tp_file import TpFileSampler, read_tp_file
from visa_lib.tfs.video_llm import (
    SAMPLER_NAMES,
    VideoLLM,
    VideoLLMConfig,
    VideoLLMSampler,
    build_frame_sampler,
)

__all__ = [
    "FALLBACK_TP",
    "NUM_ANSWERS",
    "PERCENT_PATTERNS",
    "QUESTION_TEMPLATE",
    "SAMPLER_MAX_FRAMES",
    "SAMPLER_NAMES",
    "HFVideoLLMSampler",
    "FirstFrameSampler",
    "FrameSampler",
    "OracleSampler",
    "TFSResult",
    "TpFileSampler",
    "UniformSampler",
    "VideoLLM",
    "VideoLLMConfig",
    "VideoLLMSampler",
    "aggregate",
    "build_frame_sampler",
    "build_tfs_question",
    "oracle_frame",
    "oracle_tp",
    "parse_percentage",
    "percentage_answer",
    "query_seed",
    "read_tp_file",
    "target_frame",
]
