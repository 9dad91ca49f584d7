"""GPU memory per GPU of VISA training, 7B and 13B: bf16 LoRA, 4-bit QLoRA, DeepSpeed ZeRO-2.

Computed from the configs with ``visa_lib.train.memory.training_memory`` (weights, gradients and
AdamW states are exact for each set-up -- ``tests/test_train_memory.py`` checks them against a real
optimizer step of the toy model -- activations are an estimate, see ``docs/training.md``). No GPU
is needed; nothing is allocated.

Usage:
    python benchmarks/train_memory.py [--gpus 8] [--frames 12] [--expressions 3] [--no-checkpointing]
"""

from __future__ import annotations

import argparse

from visa_lib.train.memory import memory_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=8, help="GPUs ZeRO-2 shards over (VISA: 8)")
    parser.add_argument("--frames", type=int, default=12, help="reference frames per sample (VISA: 8-12)")
    parser.add_argument("--expressions", type=int, default=3, help="conversations per sample (VISA: up to 3)")
    parser.add_argument(
        "--no-checkpointing", action="store_true", help="activations without gradient checkpointing"
    )
    args = parser.parse_args()
    print(
        f"GiB per GPU; micro-batch 1, {args.frames} reference frames + the target, {args.expressions} "
        f"conversations, gradient checkpointing {'off' if args.no_checkpointing else 'on'}"
    )
    print(
        memory_table(
            num_gpus=args.gpus,
            frames=args.frames,
            expressions=args.expressions,
            gradient_checkpointing=not args.no_checkpointing,
        )
    )


if __name__ == "__main__":
    main()
