"""visa_lib.train.train: configs, resuming, two processes through `accelerate launch`, QLoRA set-up,
validation through the pipeline, the exported checkpoint, and the `visa train` command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_training import tiny_config, tiny_data, tiny_model

from visa_lib.cli import main as visa_main
from visa_lib.train import train
from visa_lib.train.config import PRESETS, TrainConfig, load_train_config, parse_overrides
from visa_lib.train.sources import SampleStream
from visa_lib.train.trainer import latest_checkpoint, parameter_groups, warmup_decay

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TESTS = Path(__file__).parent


def weights_of(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def scrambled(model):
    """``model`` with noise on every weight (same architecture, token-merger seed included)."""
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator))
    return model


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].numel())


# ------------------------------------------------------------------------------------- configuration


def test_presets_follow_visa_recipe_and_toy_script_defaults():
    visa = load_train_config("visa-7b")
    assert (visa.lr, visa.betas, visa.weight_decay, visa.grad_clip) == (3e-4, (0.9, 0.95), 0.0, 1.0)
    assert (visa.lr_warmup_steps, visa.steps, visa.micro_batch, visa.grad_accum) == (100, 15000, 1, 16)
    assert visa.mode == "lora" and visa.frames == (8, 12) and visa.mixed_precision == "bf16"
    qlora = load_train_config("visa-13b-qlora")
    assert qlora.load_in_4bit and qlora.model == "chatunivi-13b" and qlora.grad_accum == 128
    toy = load_train_config("toy")
    assert (toy.text_warmup_steps, toy.steps, toy.micro_batch, toy.lr, toy.decoder_lr) == (
        400,
        1000,
        2,
        1e-3,
        1e-4,
    )
    assert set(PRESETS) >= {"toy", "visa-7b", "visa-13b", "visa-7b-qlora"}


def test_overrides_and_files(tmp_path):
    parsed = parse_overrides(
        [
            "--steps",
            "20",
            "--frames",
            "4",
            "11",
            "--no-export",
            "--head-lr",
            "none",
            "--load-in-4bit",
            "--lr",
            "-1e-4",
        ]
    )
    assert parsed == {
        "steps": 20,
        "frames": (4, 11),
        "export": False,
        "head_lr": None,
        "load_in_4bit": True,
        "lr": -1e-4,
    }
    with pytest.raises(ValueError, match="did you mean --steps"):
        parse_overrides(["--stepz", "3"])
    with pytest.raises(ValueError, match="takes 2 values"):
        parse_overrides(["--frames", "4"])
    (tmp_path / "run.yaml").write_text("preset: toy\nsteps: 7\nframes: [5, 6]\n")
    config = load_train_config(tmp_path / "run.yaml", lr=0.5)
    assert (config.steps, config.frames, config.lr, config.text_warmup_steps) == (7, (5, 6), 0.5, 400)
    with pytest.raises(ValueError, match="unknown option"):
        load_train_config("toy", stepz=1)
    with pytest.raises(FileNotFoundError):
        load_train_config(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="frames"):
        TrainConfig(frames=(5, 2))


def test_lr_shape_and_parameter_groups():
    factor = warmup_decay(steps=10, warmup=2)
    assert [factor(s) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    model = tiny_model()
    from visa_lib.train.trainable import prepare_for_training

    prepare_for_training(model, mode="lora")
    groups = {g["name"]: g["lr"] for g in parameter_groups(model, 1e-3, {"sam": 1e-4, "seg_head": 0})}
    assert groups == {"llm": 1e-3, "sam": 1e-4}  # lr 0 freezes the head
    assert not any(p.requires_grad for p in model.seg_head.parameters())


def test_sample_stream_serves_increasing_indices_and_restores_its_position():
    rng = np.random.default_rng(0)
    stream = SampleStream(lambda r: float(r.random()), rng)
    values = [stream[0], stream[2]]  # sample 1 is drawn and skipped (another process's)
    with pytest.raises(IndexError, match="increasing order"):
        stream[1]
    reference = np.random.default_rng(0).random(6)
    assert values == [reference[0], reference[2]] and stream.state_dict() == {"position": 3}
    stream.skip_to(5)  # the end of a step read by other processes
    assert stream[5] == reference[5] and stream.state_dict() == {"position": 6}


# ------------------------------------------------------------------------------------------ training


def test_train_learns_logs_validates_and_exports(tmp_path):
    from visa_lib.data.revos import load_revos
    from visa_lib.model.checkpoints import CheckpointFiles, classify_checkpoint
    from visa_lib.paths import REASONVOS_LITE

    data = tiny_data()
    fixed = data.visa[0]  # one sample over and over: its loss must fall
    data.visa = SampleStream(lambda rng: fixed, data.rng)
    data.valid_split = load_revos(REASONVOS_LITE, "valid")
    config = tiny_config(
        steps=6, lr=1e-2, eval_every=6, eval_expressions=1, val_sampler=None, output_dir=str(tmp_path)
    )
    result = train(config, model=tiny_model(), data=data, progress=False)
    visa = [h for h in result.history if h["phase"] == "visa"]
    assert [h["phase"] for h in result.history[:2]] == ["text-warmup"] * 2 and len(visa) == 6
    assert [h["lr"] for h in visa] == pytest.approx(
        [5e-3, 1e-2, 1e-2, 7.5e-3, 5e-3, 2.5e-3]
    )  # warm-up, decay
    assert visa[-1]["total"] < 0.8 * visa[0]["total"]
    assert result.history[0]["bce"] == 0.0  # the text-only warm-up has no mask
    (validation,) = result.validations
    assert validation["step"] == 6 and 0 <= validation["J&F"] <= 100
    assert validation["J&F"] == pytest.approx((validation["J"] + validation["F"]) / 2, abs=0.01)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "config" and any(line.get("event") == "validation" for line in lines)
    assert sum(1 for line in lines if line.get("phase") == "visa") == 6
    assert classify_checkpoint(CheckpointFiles(result.export_dir).keys()) == "visa"
    assert not any("lora_" in name for name, _ in result.model.named_parameters())  # merged


def test_train_reads_visa_mixture_by_global_index():
    """VISA's weighted mixture (a map-style dataset) is a data source as it is: sample i of the run is
    mixture[i], so two runs over the same mixture see the same samples."""
    from visa_lib.train.mixture import default_mixture
    from visa_lib.train.sources import TrainingData

    config = tiny_config(text_warmup_steps=0, steps=2, micro_batch=1, grad_accum=2)
    runs = [
        train(config, model=tiny_model(), data=TrainingData(visa=default_mixture(8, seed=3)), progress=False)
        for _ in range(2)
    ]
    losses = [[h["total"] for h in run.history] for run in runs]
    assert len(losses[0]) == 2 and all(np.isfinite(losses[0])) and losses[0] == losses[1]
    assert any(h["bce"] > 0 for h in runs[0].history)  # mask terms from the mixture's ground truth


@pytest.mark.parametrize("negative_prob", [0.0, 1.0])
def test_negative_prob_is_the_share_of_empty_target_frames(negative_prob):
    """``negative_prob`` reaches VISA's clip sampler: 1.0 gives only target frames from another video
    (empty masks to learn) even without ``with_empty_targets``, 0.0 none (no-target expressions dropped)."""
    from visa_lib.paths import REASONVOS_LITE
    from visa_lib.train.sources import revos_sources

    config = TrainConfig(
        model="toy",
        data_root=str(REASONVOS_LITE),
        frames=(2, 3),
        eval_every=0,
        with_empty_targets=False,
        negative_prob=negative_prob,
    )
    data = revos_sources(config, tiny_model(), progress=False)
    empty = [not data.visa[i].gt_masks.any() for i in range(6)]
    assert empty == [negative_prob == 1.0] * 6


def test_resumed_run_reaches_the_same_weights(tmp_path):
    """6 VISA steps in one go == resume from the checkpoint saved after step 3 (LoRA dropout on, so the
    torch RNG state must come back too) and train steps 4-6."""
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"
    config = tiny_config(steps=6, save_every=3, lora_dropout=0.05)
    full = train(config, model=tiny_model(), data=tiny_data(), progress=False, output_dir=str(full_dir))
    checkpoint = full_dir / "checkpoints" / "1-visa-step000003"
    assert checkpoint.is_dir() and latest_checkpoint(full_dir).name == "1-visa-step000006"
    resumed = train(
        config.replace(resume_from=str(checkpoint), output_dir=str(resumed_dir)),
        model=scrambled(tiny_model()),  # other weights: everything must come from the checkpoint
        data=tiny_data(seed=7),  # other sample stream: its position and generator state too
        progress=False,
    )
    assert [h["total"] for h in resumed.history] == [h["total"] for h in full.history]
    assert max_difference(weights_of(full.model), weights_of(resumed.model)) == 0.0


def test_warm_up_then_seg_phase_in_two_calls_matches_one_call():
    """scripts/train_toy_visa.py stops after the warm-up to score its answers, then goes on with the
    same model and data: the weights must be those of one uninterrupted run."""
    torch.manual_seed(0)
    one = train(tiny_config(), model=tiny_model(), data=tiny_data(), progress=False)
    torch.manual_seed(0)
    data = tiny_data()
    warm = train(tiny_config(steps=0), model=tiny_model(), data=data, progress=False)
    two = train(tiny_config(text_warmup_steps=0), model=warm.model, data=data, progress=False)
    assert [h["phase"] for h in warm.history + two.history] == [h["phase"] for h in one.history]
    assert max_difference(weights_of(one.model), weights_of(two.model)) == 0.0


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` on the CPU (gloo), 1 sample per process per
    step, against one process accumulating 2 samples: same samples, same averaged gradient, same weights."""
    one = train(tiny_config(grad_accum=2), model=tiny_model(), data=tiny_data(), progress=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "two.safetensors"
    # `--cpu` alone starts one process unless MPI is installed; torchrun's launcher (`--multi_gpu`)
    # with ACCELERATE_USE_CPU makes two CPU processes that accelerate joins with gloo.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]),
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_USE_CPU": "1",
    }
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(port), str(TESTS / "tiny_training.py"), str(out), "grad_accum=1",
    ]  # fmt: skip
    run = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    two = load_file(str(out))
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        metadata = f.metadata()
    assert metadata["processes"] == "2" and metadata["backend"] == "gloo"
    losses_two = json.loads(metadata["losses"])
    np.testing.assert_allclose(losses_two, [h["total"] for h in one.history], rtol=1e-5)
    difference = max_difference(weights_of(one.model), two)
    print(f"two processes vs one: max |weight difference| {difference:.3g}")
    assert difference < 1e-5, difference
    trained = max_difference(weights_of(tiny_model()), two)
    assert trained > 1e-3  # and training did move the weights


# ----------------------------------------------------------------------------------- QLoRA, commands


def test_qlora_needs_cuda_with_a_clear_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        train("visa-7b-qlora", weights="unused")
    assert visa_main(["train", "visa-7b-qlora", "--steps", "3"]) == 2
    assert "QLoRA" in capsys.readouterr().err


def test_qlora_configuration_objects(monkeypatch):
    """The bitsandbytes config (NF4, double quantisation, bf16 compute, head/SAM/projector unquantised)
    and the trainable set after peft's k-bit preparation: fp32 adapters on q/v, bf16 [SEG] rows and
    lm_head, mask decoder and [SEG] head trainable, the rest frozen."""
    import importlib.util

    from visa_lib.model import build as build_module
    from visa_lib.train.trainable import prepare_for_training

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: object() if n == "bitsandbytes" else real_find_spec(n, *a)
    )
    bnb = build_module._quantization(load_in_8bit=False, load_in_4bit=True)
    assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "nf4" and bnb.bnb_4bit_use_double_quant
    assert bnb.bnb_4bit_compute_dtype == torch.bfloat16
    assert {"lm_head", "visual_model", "text_hidden_fcs", "mm_projector"} <= set(bnb.llm_int8_skip_modules)

    model = tiny_model()
    for part in (model.llm, model.projector, model.seg_head, model.vision_tower, model.sam):
        part.to(torch.bfloat16)  # what build_visa(dtype="bfloat16") does
    model.causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.causal_lm.is_loaded_in_4bit = True  # what transformers sets on a quantised model
    prepare_for_training(model, mode="lora")
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    lora = [n for n in trainable if "lora_" in n]
    assert lora and all(("q_proj" in n or "v_proj" in n) for n in lora)
    assert all(trainable[n].dtype == torch.float32 for n in lora)
    full = [n for n in trainable if "embed_tokens" in n or "lm_head" in n]
    assert len(full) == 2 and all(trainable[n].dtype == torch.bfloat16 for n in full)
    assert any(n.startswith("sam.mask_decoder") for n in trainable) and any(
        n.startswith("seg_head") for n in trainable
    )
    assert not any(n.startswith(("vision_tower", "projector", "sam.image_encoder")) for n in trainable)
    assert any(getattr(m, "gradient_checkpointing", False) is True for m in model.causal_lm.modules())
    norms = [p for n, p in model.named_parameters() if "norm" in n and n.startswith("llm")]
    assert norms and all(p.dtype == torch.float32 for p in norms)  # peft's k-bit preparation


def test_visa_train_command_options_and_errors(capsys):
    assert visa_main(["train", "toy", "--steps", "3", "--frames", "4", "6", "--print-config"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["steps"] == 3 and shown["frames"] == [4, 6] and shown["model"] == "toy"
    assert visa_main(["train", "toy", "--stepz", "3"]) == 2
    assert "did you mean --steps" in capsys.readouterr().err
    assert visa_main(["train", "nonexistent.yaml"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_visa_train_command_trains_the_toy_and_writes_its_outputs(tmp_path, capsys):
    """`visa train toy` end to end on the bundled ReasonVOS-lite (random toy CLIP/SAM, 2 steps)."""
    out = tmp_path / "run"
    options = [
        "--pretrained",
        "false",
        "--steps",
        "2",
        "--text-warmup-steps",
        "0",
        "--generate-train-videos",
        "0",
    ]
    options += ["--frames", "1", "2", "--save-every", "1", "--log-every", "1", "--output-dir", str(out)]
    assert visa_main(["train", "toy", *options]) == 0
    assert "merged model (VISA layout)" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "0-visa-step000001",
        "0-visa-step000002",
    ]
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if s.get("phase") == "visa"] == [0, 1]
    assert (out / "visa" / "model.safetensors").is_file() and (out / "visa" / "config.json").is_file()


# ------------------------------------------------------------------------------ mixture file, workers


def test_process_share_is_the_loops_split_of_each_global_batch():
    """Process r of N reads block r of each step's global batch; one sample each: DistributedSampler's."""
    from visa_lib.train.sources import ProcessShare

    assert list(ProcessShare(1, 3, per_process=2, num_processes=2, rank=1)) == [6, 7, 10, 11]
    assert len(ProcessShare(1, 3, per_process=2, num_processes=2, rank=1)) == 4
    for rank in range(2):
        sampler = torch.utils.data.DistributedSampler(range(6), num_replicas=2, rank=rank, shuffle=False)
        assert list(ProcessShare(0, 3, 1, 2, rank)) == list(sampler)


def write_mixture_file(tmp_path: Path) -> Path:
    """ReasonVOS-lite clips + the ReasonSeg image fixture, with a seed whose first 4 draws use both."""
    from dataset_fixtures import write_reasonseg

    from visa_lib.paths import REASONVOS_LITE
    from visa_lib.train.mixture import VisaMixture

    write_reasonseg(tmp_path / "ReasonSeg")
    datasets = [
        {"name": "lite", "format": "revos", "root": str(REASONVOS_LITE), "frame_range": [1, 2], "rate": 1},
        {"name": "reason_seg", "format": "reasonseg", "root": str(tmp_path / "ReasonSeg"), "rate": 1},
    ]
    config = {"datasets": datasets, "samples_per_epoch": 8}
    mixture = VisaMixture.from_config(config)
    for seed in range(100):
        mixture.seed = seed
        if len({mixture.dataset_index(i) for i in range(4)}) == 2:
            break
    path = tmp_path / "mixture.yaml"
    import yaml

    path.write_text(yaml.safe_dump({**config, "seed": seed}))
    return path


def test_visa_train_on_a_mixture_file_gives_the_same_weights_with_two_workers(tmp_path, capsys):
    """`visa train toy --data mixture.yaml`: 2 steps of 2 samples (video and image) loaded in the
    loop's process and in 2 DataLoader workers reach identical weights."""
    mixture = write_mixture_file(tmp_path)
    options = ["--pretrained", "false", "--steps", "2", "--micro-batch", "2", "--grad-accum", "1"]
    options += ["--text-warmup-steps", "0", "--generate-train-videos", "0", "--log-every", "1"]
    weights = {}
    for workers in (0, 2):
        out = tmp_path / f"workers{workers}"
        code = visa_main(
            ["train", "toy", "--data", str(mixture), "--num-workers", str(workers), "--output-dir", str(out),
             *options]
        )  # fmt: skip
        assert code == 0, capsys.readouterr().err
        weights[workers] = load_file(str(out / "visa" / "model.safetensors"))
        steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        losses = [s["total"] for s in steps if s.get("phase") == "visa"]
        assert len(losses) == 2 and all(np.isfinite(losses))
    assert max_difference(weights[0], weights[2]) == 0.0


def test_bad_mixture_file_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets:\n  - {name: x, format: nope, root: .}\n")
    broken = tmp_path / "broken.json"
    broken.write_text("{datasets: ")
    missing_root = tmp_path / "missing.yaml"
    missing_root.write_text(f"datasets:\n  - {{format: reasonseg, root: {tmp_path / 'absent'}}}\n")
    for path, words in [
        (bad, "unknown format 'nope'"),
        (broken, "cannot be parsed"),
        (missing_root, "absent"),
        (tmp_path / "none.yaml", "does not exist"),
    ]:
        assert visa_main(["train", "toy", "--data", str(path), "--steps", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(path) in err and words in err, err
    assert visa_main(["train", "toy", "--num-workers", "2"]) == 2  # the ReVOS clip stream is read in order
    assert "needs a mixture file" in capsys.readouterr().err
    with pytest.raises(ValueError, match="data must be 'revos' or a mixture file"):
        TrainConfig(data="mixture.txt")


def test_a_mixture_run_resumes_to_the_same_weights(tmp_path, capsys):
    """`visa train toy --data mixture.yaml --num-workers 2`: 4 steps in one go == resume from the
    checkpoint of step 2 and train steps 3-4 (the loader starts at the saved global sample index)."""
    mixture = write_mixture_file(tmp_path)
    options = ["--pretrained", "false", "--steps", "4", "--micro-batch", "1", "--grad-accum", "1"]
    options += ["--text-warmup-steps", "0", "--generate-train-videos", "0", "--num-workers", "2"]
    options += ["--data", str(mixture), "--save-every", "2", "--lora-dropout", "0.05"]
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    assert visa_main(["train", "toy", "--output-dir", str(full), *options]) == 0, capsys.readouterr().err
    checkpoint = full / "checkpoints" / "0-visa-step000002"  # phase 0: no text warm-up
    assert checkpoint.is_dir()
    args = ["train", "toy", "--output-dir", str(resumed), "--resume-from", str(checkpoint), *options]
    assert visa_main(args) == 0, capsys.readouterr().err
    weights = [load_file(str(out / "visa" / "model.safetensors")) for out in (full, resumed)]
    assert max_difference(*weights) == 0.0
