"""``TrainConfig``: every knob of a VISA training run, named presets, files and ``--option value`` overrides.

A run is described by one flat dataclass so that the same values can come from a preset
(``"toy"``, ``"visa-7b"``, ...), a YAML/JSON file, keyword arguments of
:func:`visa_lib.train.train` or ``visa train CONFIG --option value`` on the command line.
``docs/training.md`` explains each field and VISA's recipe behind the defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from visa_lib.data.sampling import NEGATIVE_PROB

#: Learning-rate knobs that map to a top-level part of ``VisaModel`` (``group_lrs`` of the optimizer).
PART_LRS = {"decoder_lr": "sam", "head_lr": "seg_head"}
MIXED_PRECISION = ("no", "bf16", "fp16")
MIXTURE_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class TrainConfig:
    """One training run. Defaults are VISA's recipe (8 GPUs x micro-batch 1 x 16 accumulation).

    Model:
      model (str): ``VisaConfig`` name ("toy", "chatunivi-7b", "chatunivi-13b").
      weights (str | None): Chat-UniVi folder to start from (full rung; None: a random toy LLM);
        clip_weights, sam_weights: CLIP folder and SAM checkpoint (``build_visa``'s arguments).
      pretrained (bool): toy only; False uses random toy CLIP and SAM (a pipeline check).
      dtype (str | None), load_in_4bit (bool), gradient_checkpointing (bool): ``build_visa``
        arguments (dtype None: bf16 for a checkpoint folder, else fp32). ``load_in_4bit`` is QLoRA
        (NF4 LLM through bitsandbytes; CUDA only).
      lora_dropout (float | None): dropout of the adapters (None: VISA's 0.05).
      mode (str): "lora" (VISA) or "full" (every LLM weight).
    Data:
      data (str): "revos" -- a ReVOS-format root (``data_root``) sampled with VISA's clip rule -- or
        a mixture file (``.yaml``/``.yml``/``.json`` with a ``datasets`` list, ``docs/datasets.md``):
        VISA's weighted mixture of datasets, read by global sample index.
      num_workers (int): DataLoader worker processes that load a mixture's samples (0: in the loop's
        process); the samples do not depend on it. The ReVOS clip stream needs 0.
      data_root (str | None): dataset root (default: the bundled ReasonVOS-lite).
      train_split (str): split to train on.
      generate_train_videos (int): >0 generates that many ReasonVOS-lite videos to train on (toy).
      frames (tuple[int, int]): reference frames per clip, inclusive (VISA: 8 to 12).
      with_empty_targets (bool): keep no-target expressions and VISA's 5 % negative frames.
      negative_prob (float | None): share of clips whose target frame comes from another video
        (an empty mask to learn); None: VISA's 0.05 with ``with_empty_targets``, else 0.
      cache_features (bool): keep the frozen per-frame features in memory (toy: True; full rung: False).
    Text-only warm-up (a toy LLM trained from scratch has no Chat-UniVi pretraining):
      text_warmup_steps (int): steps answering "It is {target}." (every LLM weight, projector too).
      text_warmup_answer (str): "target" (description of the target) or "query".
    Optimisation:
      steps (int): optimizer steps of the VISA phase (VISA: 10 epochs x 1500 = 15000).
      micro_batch (int): samples per process per backward group; their mask losses are averaged
        over all their masks (VISA: 1).
      grad_accum (int): micro-batches per optimizer step (VISA: 16). Global batch =
        processes x grad_accum x micro_batch (VISA: 8 x 16 x 1 = 128).
      lr (float), decoder_lr (float | None), head_lr (float | None): peak learning rates (SAM mask
        decoder / ``[SEG]`` head default to ``lr``; 0 freezes).
      betas (tuple[float, float]), weight_decay (float), grad_clip (float): AdamW and clipping.
      lr_warmup_steps (int): linear warm-up, then linear decay to 0 at ``steps`` (VISA: 100).
      mixed_precision (str): "no", "bf16" or "fp16" (accelerate's autocast).
      seed (int): seeds the model's initialisation, the sample stream and every RNG.
    Bookkeeping:
      output_dir (str | None): checkpoints, metrics log and the exported model go here.
      save_every (int): save a resumable checkpoint every N optimizer steps (0: only at the end).
      resume_from (str | None): a checkpoint folder, or "latest" (the newest in ``output_dir``).
      eval_every (int): validation J&F every N steps of the VISA phase (0: never).
      eval_expressions (int): expressions of the validation split scored each time.
      val_root (str | None), val_split (str): validation data (default: ``data_root``, "valid").
      val_sampler (str | None): frame sampler of the validation pipeline ("toy", "uniform", ...;
        None: the frame where the object is largest).
      val_xmem_weights (str | None): official ``XMem.pth`` for validation (None: the toy XMem).
      log_every (int): metrics-log line every N steps.
      export (bool): write the merged model in VISA's published layout to ``output_dir/visa``.
    """

    model: str = "chatunivi-7b"
    weights: str | None = None
    clip_weights: str | None = None
    sam_weights: str | None = None
    pretrained: bool = True
    dtype: str | None = None
    load_in_4bit: bool = False
    gradient_checkpointing: bool = True
    lora_dropout: float | None = None
    mode: str = "lora"
    data: str = "revos"
    num_workers: int = 0
    data_root: str | None = None
    train_split: str = "train"
    generate_train_videos: int = 0
    frames: tuple[int, int] = (8, 12)
    with_empty_targets: bool = True
    negative_prob: float | None = None
    cache_features: bool = False
    text_warmup_steps: int = 0
    text_warmup_answer: str = "target"
    steps: int = 15000
    micro_batch: int = 1
    grad_accum: int = 16
    lr: float = 3e-4
    decoder_lr: float | None = None
    head_lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    lr_warmup_steps: int = 100
    mixed_precision: str = "bf16"
    seed: int = 0
    output_dir: str | None = None
    save_every: int = 1500
    resume_from: str | None = None
    eval_every: int = 1500
    eval_expressions: int = 20
    val_root: str | None = None
    val_split: str = "valid"
    val_sampler: str | None = "uniform"
    val_xmem_weights: str | None = None
    log_every: int = 10
    export: bool = True
    notes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = [
            (self.mode in ("lora", "full"), f"mode must be 'lora' or 'full', got {self.mode!r}"),
            (
                self.data == "revos" or Path(self.data).suffix in MIXTURE_SUFFIXES,
                f"data must be 'revos' or a mixture file ({'/'.join(MIXTURE_SUFFIXES)}), got {self.data!r}",
            ),
            (self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}"),
            (
                self.data != "revos" or self.num_workers == 0,
                "num_workers > 0 needs a mixture file as data (the ReVOS clip stream is drawn in order)",
            ),
            (
                self.negative_prob is None or 0.0 <= self.negative_prob <= 1.0,
                f"negative_prob must be between 0 and 1, got {self.negative_prob}",
            ),
            (self.micro_batch >= 1 and self.grad_accum >= 1, "micro_batch and grad_accum must be >= 1"),
            (self.steps >= 0 and self.text_warmup_steps >= 0, "steps must be >= 0"),
            (self.mixed_precision in MIXED_PRECISION, f"mixed_precision must be one of {MIXED_PRECISION}"),
            (
                self.text_warmup_answer in ("target", "query"),
                "text_warmup_answer must be 'target' or 'query'",
            ),
            (
                len(self.frames) == 2 and 1 <= self.frames[0] <= self.frames[1],
                "frames must be MIN MAX, 1 <= MIN <= MAX",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {message}")
        self.frames = tuple(int(f) for f in self.frames)
        self.betas = tuple(float(b) for b in self.betas)

    def replace(self, **changes: object) -> TrainConfig:
        """A copy with some fields changed (unknown names raise a one-line error)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"TrainConfig: unknown option(s) {unknown}; see docs/training.md for the list")
        return dataclasses.replace(self, **changes)

    def negative_frame_prob(self) -> float:
        """``negative_prob``, or its default: VISA's 5 % with ``with_empty_targets``, else 0."""
        if self.negative_prob is not None:
            return self.negative_prob
        return NEGATIVE_PROB if self.with_empty_targets else 0.0

    def uses_mixture(self) -> bool:
        """True when ``data`` names a mixture file rather than the ReVOS clip stream."""
        return self.data != "revos"

    def group_lrs(self) -> dict[str, float]:
        """Per-part learning rates that differ from ``lr`` (``{"sam": decoder_lr, ...}``)."""
        return {
            part: getattr(self, knob) for knob, part in PART_LRS.items() if getattr(self, knob) is not None
        }

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: Named runs. "toy" is the recipe of the shipped toy VISA (``scripts/train_toy_visa.py``).
PRESETS: dict[str, dict] = {
    "toy": dict(
        model="toy",
        gradient_checkpointing=False,
        generate_train_videos=150,
        frames=(4, 11),
        with_empty_targets=False,
        cache_features=True,
        text_warmup_steps=400,
        steps=1000,
        micro_batch=2,
        grad_accum=1,
        lr=1e-3,
        decoder_lr=1e-4,
        lr_warmup_steps=50,
        mixed_precision="no",
        save_every=0,
        eval_every=0,
        eval_expressions=8,
        val_sampler="toy",
        log_every=50,
    ),
    "visa-7b": dict(model="chatunivi-7b"),
    "visa-13b": dict(model="chatunivi-13b"),
    # One GPU: the LLM in 4-bit NF4, the global batch of 128 kept by accumulating 128 micro-batches.
    "visa-7b-qlora": dict(model="chatunivi-7b", load_in_4bit=True, grad_accum=128),
    "visa-13b-qlora": dict(model="chatunivi-13b", load_in_4bit=True, grad_accum=128),
}


def load_train_config(name_or_path: str | Path | TrainConfig, **overrides: object) -> TrainConfig:
    """A preset name, a YAML/JSON file (its keys are fields; ``preset:`` starts from a preset) or a config.

    Arguments:
      name_or_path: "toy", "visa-7b", ..., a ``.yaml``/``.yml``/``.json`` file, or a ``TrainConfig``.
      **overrides: fields to change.
    """
    if isinstance(name_or_path, TrainConfig):
        return name_or_path.replace(**overrides)
    text = str(name_or_path)
    if text in PRESETS:
        values = dict(PRESETS[text])
    else:
        path = Path(text)
        if path.suffix not in (".yaml", ".yml", ".json"):
            raise ValueError(
                f"training config {text!r} is neither a preset ({', '.join(PRESETS)}) nor a .yaml/.json file"
            )
        if not path.is_file():
            raise FileNotFoundError(f"training config {path} does not exist; pass a preset or a file")
        values = read_mapping_file(path, "option names to values")
        preset = values.pop("preset", None)
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"{path}: preset {preset!r} is not one of {', '.join(PRESETS)}")
            values = {**PRESETS[preset], **values}
    return TrainConfig().replace(**{**values, **overrides})


def read_mapping_file(path: Path, what: str) -> dict:
    """The mapping in a ``.json`` or ``.yaml``/``.yml`` file (one-line ``ValueError`` naming the file)."""
    errors: tuple[type[Exception], ...] = (ValueError,)  # JSONDecodeError is a ValueError
    try:
        if path.suffix == ".json":
            values = json.loads(path.read_text())
        else:
            import yaml

            errors += (yaml.YAMLError,)
            values = yaml.safe_load(path.read_text()) or {}
    except errors as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{path}: cannot be parsed ({first}); fix the file") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of {what}")
    return values


def _field_types() -> dict[str, object]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def _convert(name: str, kind: object, values: list[str]) -> object:
    """Text values of ``--name`` -> the field's type (``None``/``none`` clears an optional field)."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
        if values == ["none"] or values == ["None"]:
            return None
        kind = next(a for a in args if a is not type(None))
        args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple:
        if len(values) != len(args):
            raise ValueError(f"--{name.replace('_', '-')} takes {len(args)} values, got {values}")
        return tuple(t(v) for t, v in zip(args, values, strict=True))
    if kind is bool:
        if not values:
            return True
        lowered = values[0].lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"--{name.replace('_', '-')} expects true or false, got {values[0]!r}")
        return lowered in ("true", "1", "yes")
    if len(values) != 1:
        raise ValueError(f"--{name.replace('_', '-')} takes one value, got {values}")
    if kind is dict:
        return json.loads(values[0])
    return kind(values[0])  # type: ignore[operator]


def parse_overrides(tokens: list[str]) -> dict[str, object]:
    """``["--steps", "10", "--frames", "4", "11", "--no-export"]`` -> ``{"steps": 10, ...}``.

    Every ``--option`` names a ``TrainConfig`` field (dashes or underscores); ``--no-option`` sets a
    boolean to False; ``none`` clears an optional field.
    """
    kinds = _field_types()
    out: dict[str, object] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--"):
            raise ValueError(f"expected --option, got {token!r} (options: --steps 10 --lr 1e-4 ...)")
        name = token[2:].replace("-", "_")
        values = []
        i += 1
        while i < len(tokens) and not (
            tokens[i].startswith("--") and len(tokens[i]) > 2 and not _is_number(tokens[i])
        ):
            values.append(tokens[i])
            i += 1
        if name.startswith("no_") and name[3:] in kinds and kinds[name[3:]] is bool and not values:
            out[name[3:]] = False
            continue
        if name not in kinds:
            close = difflib.get_close_matches(name, list(kinds), n=1)
            hint = f" (did you mean --{close[0].replace('_', '-')}?)" if close else ""
            raise ValueError(f"unknown option --{name.replace('_', '-')}{hint}; see docs/training.md")
        out[name] = _convert(name, kinds[name], values)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
