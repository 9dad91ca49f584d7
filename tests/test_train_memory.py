"""Training memory formulas against the real bytes of a toy optimizer step (weights, grads, AdamW)."""

import pytest
import torch
from test_visa_model import TINY, box_sample

from visa_lib.model.build import build_visa
from visa_lib.model.configs import get_config
from visa_lib.train.memory import activation_bytes, memory_table, trainable_parameters, training_memory
from visa_lib.train.step import weighted_loss
from visa_lib.train.trainable import prepare_for_training
from visa_lib.train.trainer import parameter_groups

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def real_bytes(model, optimizer) -> dict[str, int]:
    def size(t):
        return t.numel() * t.element_size()

    states = [s for state in optimizer.state.values() for k, s in state.items() if k != "step"]
    return {
        "weights": sum(size(p) for p in model.parameters()),
        "gradients": sum(size(p.grad) for p in model.parameters() if p.grad is not None),
        "optimizer": sum(size(s) for s in states),
    }


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_lora_formulas_match_a_real_optimizer_step_of_the_toy(dtype):
    """bf16: the model in bf16 and the peft adapters in fp32 -- the mix of the full rung -- so every
    dtype rule of the formula is exercised."""
    model = build_visa("toy", weights=None, pretrained=False, check_trained=False, dtype=dtype)
    config = get_config("toy")
    prepare_for_training(model, mode="lora")
    optimizer = torch.optim.AdamW(parameter_groups(model, 1e-3))
    _, _, sample = box_sample(model, (8, 30, 10, 40))
    loss, _ = weighted_loss(model, sample, [sample])
    loss.backward()
    optimizer.step()
    real = real_bytes(model, optimizer)
    formula = training_memory(config, "lora", dtype=dtype, vocab_size=len(model.tokenizer))
    assert (formula.weights, formula.gradients, formula.optimizer) == (
        real["weights"],
        real["gradients"],
        real["optimizer"],
    )
    counts = trainable_parameters(config, dtype, vocab_size=len(model.tokenizer))
    assert sum(n for n, _ in counts.values()) == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_zero2_shards_states_and_full_rung_numbers_are_plausible():
    one = training_memory("chatunivi-7b", "zero2", num_gpus=1, reduce_bucket=0)
    eight = training_memory("chatunivi-7b", "zero2", num_gpus=8, reduce_bucket=0)
    assert eight.optimizer == pytest.approx(one.optimizer / 8) and eight.gradients == pytest.approx(
        one.gradients / 8
    )
    assert eight.weights == one.weights
    lora, qlora = training_memory("chatunivi-7b", "lora"), training_memory("chatunivi-7b", "qlora")
    assert 14.0 < lora.weights / 2**30 < 15.0 and qlora.weights < 0.45 * lora.weights
    assert qlora.gradients == lora.gradients  # same trainable set, same dtypes
    with_ckpt = activation_bytes(TINY, gradient_checkpointing=True)
    assert with_ckpt < activation_bytes(TINY, gradient_checkpointing=False)
    table = memory_table()
    assert table.count("chatunivi-13b") == 3 and "ZeRO-2 bf16 | 8" in table
    with pytest.raises(ValueError, match="setup must be"):
        training_memory("toy", "zero3")


def test_shipped_zero2_config_is_visa_recipe_and_loads_in_accelerate():
    import json
    from pathlib import Path

    from accelerate.commands.config.config_args import load_config_from_file

    from visa_lib.train.memory import ZERO2_REDUCE_BUCKET

    root = Path(__file__).resolve().parents[1] / "configs" / "accelerate"
    launch = load_config_from_file(str(root / "zero2.yaml"))
    assert str(launch.distributed_type).endswith("DEEPSPEED") and launch.num_processes == 8
    assert launch.deepspeed_config["deepspeed_config_file"] == "configs/accelerate/zero2.json"
    ds = json.loads((root / "zero2.json").read_text())
    zero = ds["zero_optimization"]
    assert zero["stage"] == 2 and zero["reduce_bucket_size"] == ZERO2_REDUCE_BUCKET and zero["overlap_comm"]
    assert (
        ds["bf16"]["enabled"] and ds["gradient_clipping"] == 1.0 and ds["train_micro_batch_size_per_gpu"] == 1
    )
