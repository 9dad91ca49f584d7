"""The VISA model stage: vision tower, token merging, LLM with ``[SEG]``, SAM, checkpoints.

Modules (import them directly; nothing heavy is imported here):

* ``prompts``     -- the exact ``llava_v1`` conversation VISA trains and evaluates on (``build_prompt``).
* ``tokenizer``   -- the toy word-level tokenizer, ``[SEG]``, ``<image>`` slots, label masking.
* ``configs``     -- ``VisaConfig`` and the registry: "toy", "chatunivi-7b", "chatunivi-13b".
* ``vision``      -- the frozen CLIP vision tower (256 patch tokens per frame).
* ``sam``         -- SAM builders, pre/post-processing, decoding from a prompt embedding.
* ``visa``        -- ``VisaModel``: the forward pass, ``[SEG]`` read-out, SAM decoding, generation.
* ``build``       -- ``build_visa(name, ...)``: one call assembles a model for both rungs.
* ``checkpoints`` -- Chat-UniVi / merged-VISA / our own weights, strict, with untrained warnings.
* ``memory``      -- ``model_memory_report(config)``: parameter memory per component, from the config.
"""
