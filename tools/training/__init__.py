"""Training and evaluation loops (engine), fit with checkpoints and resume, distillation,
model evaluation, and the start of a script from a checkpoint. May import core, datasets, models
and measure."""
