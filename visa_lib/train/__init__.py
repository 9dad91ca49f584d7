"""Training pieces of the VISA stage: the loss (1.0 CE + 2.0 BCE + 0.5 DICE), trainable-parameter set-up
(LoRA on q/v or full fine-tuning) and one optimisation step on a sample."""
