"""Text-guided Frame Sampler (TFS): which frame of the video should VISA segment first?

``answers``: the exact question, VISA's parsing rules, ``aggregate`` into ``tp`` and
``target_frame``; ``samplers``: the ``FrameSampler`` interface with baseline and oracle backends;
``video_llm``: a LLaMA-VID-style video LLM backend (toy weights shipped); ``evaluate``: how often
the chosen frame shows the target.
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
from visa_lib.tfs.samplers import FirstFrameSampler, FrameSampler, OracleSampler, TFSResult, UniformSampler
from visa_lib.tfs.video_llm import VideoLLM, VideoLLMConfig, VideoLLMSampler, build_frame_sampler

__all__ = [
    "FALLBACK_TP",
    "NUM_ANSWERS",
    "PERCENT_PATTERNS",
    "QUESTION_TEMPLATE",
    "FirstFrameSampler",
    "FrameSampler",
    "OracleSampler",
    "TFSResult",
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
    "target_frame",
]
