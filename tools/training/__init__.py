"""Training and evaluation loops (engine), fit with checkpoints and resume, distillation. May
import core, datasets, models and measure."""
