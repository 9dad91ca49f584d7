"""Training of the VISA stage: ``train(config)`` (one loop on accelerate for CPU, one GPU or many),
its configuration, the loss (1.0 CE + 2.0 BCE + 0.5 DICE), the trainable-parameter set-up (LoRA on
q/v, QLoRA, or full fine-tuning) and the samples it reads. ``docs/training.md`` explains it."""

from visa_lib._exports import lazy_exports

_NAMES = {
    "train": "trainer",
    "TrainResult": "trainer",
    "TrainConfig": "config",
    "load_train_config": "config",
    "visa_loss": "losses",
    "sample_forward": "step",
    "VisaSample": "step",
    "parameter_groups": "trainer",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
