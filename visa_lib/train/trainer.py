"""``train(config)``: VISA's training loop on ``accelerate`` -- CPU, one GPU, several GPUs or nodes.

One loop for every set-up; ``accelerate`` decides where it runs:

* ``train("toy")`` or ``visa train toy`` on a laptop CPU;
* ``visa train visa-7b-qlora --weights CHAT_UNIVI_DIR ...`` on one GPU (bf16; LLM in 4-bit NF4);
* ``accelerate launch --config_file configs/accelerate/zero2.yaml -m visa_lib.cli train visa-7b ...``
  on 8 GPUs with DeepSpeed ZeRO-2 (``--multi_gpu`` for plain DDP; two CPU processes: ``docs/training.md``).

Per optimizer step each process runs ``grad_accum`` micro-batches of ``micro_batch`` samples, one
backward per sample (only one sample's graph is alive at a time), and reads sample
``step x global_batch + rank x per_process + k`` from the data source (in its own process, or through
DataLoader workers with ``num_workers``: ``sources.micro_batches``), so N processes with
accumulation A see the same samples and reach the same weights as one process with accumulation
N x A. A run is a sequence of phases: the optional text-only warm-up of a toy LLM (every LLM weight,
CE only) and VISA's phase (LoRA on q/v, the ``[SEG]`` rows, ``lm_head``, the mask decoder and the
``[SEG]`` head). ``docs/training.md`` walks through it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from visa_lib.model.configs import VISA_LORA
from visa_lib.model.visa import VisaModel
from visa_lib.train.config import TrainConfig, load_train_config
from visa_lib.train.metrics_log import MetricsLog
from visa_lib.train.sources import ProcessShare, TrainingData, micro_batches, training_sources
from visa_lib.train.step import weighted_loss
from visa_lib.train.trainable import merge_lora, prepare_for_training

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"
LOSS_KEYS = ("total", "ce", "bce", "dice")


@dataclass
class Phase:
    """A stretch of steps with one trainable set, one optimizer and one learning-rate schedule."""

    name: str
    steps: int
    data: object
    mode: str
    train_projector: bool
    group_lrs: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
      model (VisaModel): the trained model, LoRA merged, in eval mode, on the main process's device.
      history (list[dict]): per optimizer step: "phase", "step", "lr" and the mean "total", "ce",
        "bce", "dice" over the step's samples (all processes).
      validations (list[dict]): "step" and "J", "F", "J&F" of each validation.
      export_dir (Path | None): the merged checkpoint in VISA's published layout.
      config (TrainConfig): the configuration that ran.
      data (TrainingData): the samples it read (with the loaded splits).
    """

    model: VisaModel
    history: list[dict]
    validations: list[dict]
    export_dir: Path | None
    config: TrainConfig
    data: TrainingData


def parameter_groups(
    model: torch.nn.Module, lr: float, group_lrs: dict[str, float] | None = None
) -> list[dict]:
    """Trainable parameters split by top-level part (``llm``, ``seg_head``, ``sam``, ...) with their lr.

    Arguments:
      model (torch.nn.Module): the prepared VisaModel.
      lr (float): default learning rate.
      group_lrs (dict[str, float] | None): learning rate per top-level part name; 0 freezes that part.
    Returns:
      list[dict]: AdamW parameter groups (each with a "name").
    """
    group_lrs = group_lrs or {}
    parts: dict[str, list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        part = name.split(".")[0]
        if param.requires_grad and group_lrs.get(part, lr) == 0:
            param.requires_grad_(False)  # a zero lr freezes the part (no wasted backward through it)
        if param.requires_grad:
            parts.setdefault(part, []).append(param)
    return [{"name": k, "params": v, "lr": group_lrs.get(k, lr)} for k, v in parts.items()]


def warmup_decay(steps: int, warmup: int) -> Callable[[int], float]:
    """VISA's ``WarmupDecayLR`` shape as a multiplier: linear up over ``warmup`` steps, then linear to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return factor


def make_accelerator(config: TrainConfig):  # -> accelerate.Accelerator
    """The ``Accelerator`` of a run: one backward per sample, so accumulation = micro_batch x grad_accum."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # The text-only warm-up leaves the [SEG] head and the mask decoder without gradients.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(
        gradient_accumulation_steps=config.micro_batch * config.grad_accum,
        mixed_precision=config.mixed_precision,
        kwargs_handlers=[ddp],
    )


def check_environment(config: TrainConfig) -> None:
    """Refuse set-ups that cannot run here, with what to do instead."""
    if config.load_in_4bit and not torch.cuda.is_available():
        raise RuntimeError(
            "load_in_4bit (QLoRA) needs a CUDA GPU and bitsandbytes, and this machine has no CUDA device; "
            "train in bf16 without --load-in-4bit, or run on a GPU (pip install visa_lib[full])"
        )
    if config.mixed_precision == "bf16" and not torch.cuda.is_available() and config.model != "toy":
        raise RuntimeError(
            f"model {config.model!r} trains in bf16 on a GPU; this machine has no CUDA device "
            "(the CPU runs the toy: visa train toy)"
        )


def build_training_model(config: TrainConfig, device: torch.device) -> VisaModel:
    """``build_visa`` with the run's model fields (no trained head expected: it is about to be trained)."""
    from visa_lib.model.build import build_visa

    return build_visa(
        config.model,
        weights=config.weights,  # None: a random toy LLM and head
        clip_weights=config.clip_weights,
        sam_weights=config.sam_weights,
        pretrained=config.pretrained,
        dtype=config.dtype,
        load_in_4bit=config.load_in_4bit,
        gradient_checkpointing=config.gradient_checkpointing,
        device=device,
        seed=config.seed,
        check_trained=False,
    )


def phases_of(config: TrainConfig, data: TrainingData) -> list[Phase]:
    """The text-only warm-up (if any) and VISA's phase."""
    phases = []
    if config.text_warmup_steps:
        if data.text_warmup is None:
            raise ValueError("text_warmup_steps > 0 but the data source has no text-only warm-up samples")
        phases.append(Phase("text-warmup", config.text_warmup_steps, data.text_warmup, "full", True))
    projector = config.mode == "full" and not config.text_warmup_steps
    phases.append(Phase("visa", config.steps, data.visa, config.mode, projector, config.group_lrs()))
    return phases


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The most advanced checkpoint folder under ``output_dir/checkpoints`` (None if there is none)."""
    folders = [p for p in (Path(output_dir) / CHECKPOINT_DIR).glob("*") if (p / STATE_FILE).is_file()]
    if not folders:
        return None

    def progress(folder: Path) -> tuple[int, int]:
        state = json.loads((folder / STATE_FILE).read_text())
        return state["phase"], state["step"]

    return max(folders, key=progress)


def _resume_folder(config: TrainConfig) -> Path | None:
    if config.resume_from is None:
        return None
    if config.resume_from == "latest":
        if config.output_dir is None:
            raise ValueError("resume_from='latest' needs output_dir (where the checkpoints are)")
        return latest_checkpoint(config.output_dir)  # None: nothing saved yet, start from scratch
    folder = Path(config.resume_from)
    if not (folder / STATE_FILE).is_file():
        raise FileNotFoundError(
            f"resume_from={folder}: no {STATE_FILE} there; pass a folder under checkpoints/"
        )
    return folder


def train(
    config: str | Path | TrainConfig = "toy",
    *,
    model: VisaModel | None = None,
    data: TrainingData | None = None,
    accelerator=None,
    progress: bool = True,
    **overrides,
) -> TrainResult:
    """Train VISA with ``config`` (a preset name, a YAML/JSON file or a ``TrainConfig``).

    Arguments:
      config: "toy", "visa-7b", "visa-13b", "visa-7b-qlora", "visa-13b-qlora", a file or a config.
      model (VisaModel | None): a ready model (default: built from the config's model fields after
        seeding every RNG with ``config.seed``; a given model keeps the caller's torch RNG state,
        which then decides the LoRA initialisation and dropout).
      data (TrainingData | None): the samples (default: ``config.data``: ReVOS-format clips or a
        mixture file).
      accelerator (accelerate.Accelerator | None): default: :func:`make_accelerator`.
      progress (bool): tqdm bar and log lines on the main process.
      **overrides: ``TrainConfig`` fields, e.g. ``steps=20, output_dir="runs/x"``.
    Returns:
      TrainResult
    """
    from accelerate.utils import set_seed

    config = load_train_config(config, **overrides)
    check_environment(config)
    accelerator = accelerator or make_accelerator(config)
    if model is None:
        set_seed(config.seed)
        model = build_training_model(config, accelerator.device)
    if data is None:
        data = training_sources(config, model, progress=progress and accelerator.is_main_process)
    out_dir = Path(config.output_dir) if config.output_dir else None
    log = MetricsLog(out_dir, enabled=accelerator.is_main_process)
    log.write({"event": "config", **config.to_dict(), "processes": accelerator.num_processes})
    validator = _validator(config, data, accelerator)
    resume = _resume_folder(config)
    resume_state = json.loads((resume / STATE_FILE).read_text()) if resume else None
    history: list[dict] = resume_state["history"] if resume_state else []
    validations: list[dict] = resume_state["validations"] if resume_state else []

    lora = VISA_LORA if config.lora_dropout is None else replace(VISA_LORA, dropout=config.lora_dropout)
    for index, phase in enumerate(phases_of(config, data)):
        if phase.steps == 0:
            continue
        prepare_for_training(model, mode=phase.mode, train_projector=phase.train_projector, lora=lora)
        if resume_state is not None and index < resume_state["phase"]:
            continue  # its weights come with the checkpoint of a later phase
        groups = parameter_groups(model, config.lr, phase.group_lrs)
        if not groups:
            raise ValueError(f"phase {phase.name!r}: the model has no trainable parameters")
        if progress:
            sizes = (f"{g['name']} {sum(p.numel() for p in g['params']):,} (lr {g['lr']:g})" for g in groups)
            accelerator.print(f"{phase.name} trainable parameters: " + ", ".join(sizes), flush=True)
        optimizer = torch.optim.AdamW(
            groups, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
        )
        # Stepped by hand once per optimizer step: accelerate's scheduler wrapper would step it once
        # per process.
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_decay(phase.steps, config.lr_warmup_steps)
        )
        wrapped, optimizer = accelerator.prepare(model, optimizer)
        start = 0
        if resume_state is not None and index == resume_state["phase"]:
            accelerator.load_state(str(resume))
            scheduler.load_state_dict(resume_state["scheduler"])
            data.load_state_dict(resume_state["data"])
            start = resume_state["step"]
            accelerator.print(f"resumed from {resume.name}: {phase.name} step {start}")
        _run_phase(
            config, accelerator, model, wrapped, optimizer, scheduler, phase, index, start,
            data, history, validations, validator, log, progress,
        )  # fmt: skip
        accelerator.free_memory(wrapped, optimizer)

    model = accelerator.unwrap_model(model)
    merge_lora(model)  # folds the adapters into the LLM (no-op without LoRA)
    model.eval()
    export_dir = None
    if out_dir is not None and config.export and accelerator.is_main_process:
        from visa_lib.model.checkpoints import export_visa_checkpoint

        export_dir = export_visa_checkpoint(model, out_dir / "visa")
        accelerator.print(f"wrote the merged model in VISA's layout to {export_dir}")
    accelerator.wait_for_everyone()
    log.close()
    return TrainResult(model, history, validations, export_dir, config, data)


def _validator(config: TrainConfig, data: TrainingData, accelerator):
    if not config.eval_every or not accelerator.is_main_process:
        return None
    if data.valid_split is None:
        raise ValueError("eval_every > 0 needs a validation split (TrainingData.valid_split)")
    from visa_lib.train.validation import Validator

    return Validator(
        data.valid_split,
        config.eval_expressions,
        sampler=config.val_sampler,
        xmem_weights=config.val_xmem_weights,
        device=accelerator.device,
        seed=config.seed,
    )


def _run_phase(
    config, accelerator, model, wrapped, optimizer, scheduler, phase, index, start,
    data, history, validations, validator, log, progress,
) -> None:  # fmt: skip
    """Optimizer steps ``start .. phase.steps - 1`` of one phase (see the module docstring)."""
    per_process = config.micro_batch * config.grad_accum
    global_batch = per_process * accelerator.num_processes
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()
    bar = tqdm(
        range(start, phase.steps),
        desc=phase.name,
        initial=start,
        total=phase.steps,
        mininterval=10,
        disable=not (progress and accelerator.is_main_process),
    )
    share = ProcessShare(
        start, phase.steps, per_process, accelerator.num_processes, accelerator.process_index
    )
    batches = micro_batches(phase.data, share, config.micro_batch, config.num_workers)
    for step in bar:
        lr = scheduler.get_last_lr()[0]
        sums = torch.zeros(len(LOSS_KEYS), dtype=torch.float64)
        for _ in range(config.grad_accum):
            samples = next(batches)
            for sample in samples:
                with accelerator.accumulate(wrapped):
                    loss, parts = weighted_loss(model, sample, samples, forward=wrapped)
                    # accelerate divides by micro_batch x grad_accum; the micro-batch mean is wanted
                    accelerator.backward(loss * config.micro_batch)
                    sums += torch.tensor([parts[k] for k in LOSS_KEYS], dtype=torch.float64)
                    if accelerator.sync_gradients:
                        if config.grad_clip:
                            accelerator.clip_grad_norm_(trainable, config.grad_clip)
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
        if hasattr(phase.data, "skip_to"):  # a shared stream: the other processes' samples are drawn too
            phase.data.skip_to((step + 1) * global_batch)
        means = sums / config.grad_accum
        if accelerator.num_processes > 1:
            means = accelerator.reduce(means.to(accelerator.device), "mean").cpu()
        record = {
            "phase": phase.name,
            "step": step,
            "lr": lr,
            **dict(zip(LOSS_KEYS, means.tolist(), strict=True)),
        }
        history.append(record)
        done = step + 1
        if config.log_every and (step % config.log_every == 0 or done == phase.steps):
            log.write(record)
            if progress:
                recent = [h for h in history[-config.log_every :] if h["phase"] == phase.name]
                text = " ".join(f"{k}={np.mean([h[k] for h in recent]):.4f}" for k in LOSS_KEYS)
                accelerator.print(f"{phase.name} step {step}: {text}", flush=True)
        if (
            phase.name == "visa"
            and config.eval_every
            and (done % config.eval_every == 0 or done == phase.steps)
        ):
            _validate(accelerator, model, validator, done, validations, log)
        if config.output_dir and (
            (config.save_every and done % config.save_every == 0) or done == phase.steps
        ):
            save_checkpoint(config, accelerator, scheduler, data, index, phase, done, history, validations)
    bar.close()
    model.eval()


def _validate(accelerator, model, validator, step, validations, log) -> None:
    if validator is not None:
        scores = validator(accelerator.unwrap_model(model))
        entry = {"step": step, **scores}
        validations.append(entry)
        log.write({"event": "validation", **entry})
        text = ", ".join(f"{k} {v:.2f}" for k, v in scores.items() if v is not None)
        accelerator.print(
            f"validation at step {step} ({validator.num_expressions} expressions): {text}", flush=True
        )
        model.train()
    accelerator.wait_for_everyone()


def save_checkpoint(config, accelerator, scheduler, data, index, phase, step, history, validations) -> Path:
    """Weights, optimizer, RNG states (accelerate) + schedule, data position and logs (ours)."""
    width = max(6, int(math.log10(max(1, phase.steps))) + 1)
    folder = Path(config.output_dir) / CHECKPOINT_DIR / f"{index}-{phase.name}-step{step:0{width}d}"
    accelerator.save_state(str(folder), safe_serialization=False)
    if accelerator.is_main_process:
        state = {
            "phase": index,
            "phase_name": phase.name,
            "step": step,
            "scheduler": scheduler.state_dict(),
            "data": data.state_dict(),
            "history": history,
            "validations": validations,
        }
        (folder / STATE_FILE).write_text(json.dumps(state))
    accelerator.wait_for_everyone()
    return folder
