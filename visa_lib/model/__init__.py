"""The VISA model stage: vision tower, token merging, LLM with ``[SEG]``, SAM, checkpoints.

Main names import from here (``from visa_lib.model import build_visa``); submodules load on first use:

* ``prompts``     -- the exact ``llava_v1`` conversation VISA trains and evaluates on (``build_prompt``).
* ``tokenizer``   -- the toy word-level tokenizer, ``[SEG]``, ``<image>`` slots, label masking.
* ``llama_tokenizer`` -- LLaMA's sentencepiece tokenizer with VISA's exact ids (``docs/tokenization.md``).
* ``configs``     -- ``VisaConfig`` and the registry: "toy", "chatunivi-7b", "chatunivi-13b".
* ``vision``      -- the frozen CLIP vision tower (256 patch tokens per frame).
* ``sam``         -- SAM builders, pre/post-processing, decoding from a prompt embedding.
* ``merge``       -- DPC-KNN token merging: ``spatial_merge`` (256 -> 64 + 32 + 16 = 112 tokens per frame).
* ``visa``        -- ``VisaModel``: the forward pass, ``[SEG]`` read-out, SAM decoding, generation.
* ``build``       -- ``build_visa(name, weights=...)``: LLM, towers, assembly, weights, for both rungs.
* ``checkpoints`` -- Chat-UniVi / merged-VISA / our own weights, strict, with untrained warnings.
* ``gpu_memory``  -- ``model_memory_report(config)``: GPU memory of the parameters (weights, gradients,
  AdamW states) per component, from the config.
"""

from visa_lib._exports import lazy_exports

_NAMES = {
    "VisaConfig": "configs",
    "LoraSettings": "configs",
    "get_config": "configs",
    "build_visa": "build",
    "VisaModel": "visa",
    "build_prompt": "prompts",
    "spatial_merge": "merge",
    "dpc_knn": "merge",
    "export_visa_checkpoint": "checkpoints",
    "load_chatunivi_checkpoint": "checkpoints",
    "load_visa_checkpoint": "checkpoints",
    "LlamaSentencePieceTokenizer": "llama_tokenizer",
    "model_memory_report": "gpu_memory",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
