"""Training pieces of the VISA stage: the loss (1.0 CE + 2.0 BCE + 0.5 DICE), trainable-parameter set-up
(LoRA on q/v or full fine-tuning) and one optimisation step on a sample."""

from visa_lib._exports import lazy_exports

_NAMES = {
    "visa_loss": "losses",
    "sample_forward": "step",
    "VisaSample": "step",
    "train_phase": "loop",
    "parameter_groups": "loop",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
