"""Knowledge distillation from the unpruned model while fine-tuning a pruned one (Hinton et al. 2015).

    uv run python -m scripts.prune_structured --checkpoint best_model.pth --target-macs-reduction 0.5 \
        --set finetune.kd.alpha=0.7 finetune.kd.temperature=4

    loss_fn = distillation_loss(teacher, alpha=0.7, temperature=4.0)
    fit(student, data, train_cfg=..., loss_fn=loss_fn, ...)

loss = (1 - alpha) * CE(student, labels) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)).
The T^2 factor keeps the soft-target gradients on the scale of the hard-label ones as T
changes. The teacher sees the same augmented batch as the student, in eval mode, without
gradients; it is never updated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tools.core.errors import UserError
from tools.training.engine import LossFn


def kd_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher || student) of the temperature-softened distributions, batch mean."""
    student = F.log_softmax(student_logits.float() / temperature, dim=1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature**2


def distillation_loss(teacher: nn.Module, *, alpha: float, temperature: float, label_smoothing: float = 0.0) -> LossFn:
    """A `fit` loss mixing hard labels and the teacher's soft targets; alpha 0 = plain CE."""
    check_kd(alpha, temperature)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def loss_fn(logits: torch.Tensor, targets: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        hard = F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
        if alpha == 0:
            return hard
        with torch.no_grad():
            teacher_logits = teacher(images)
        return (1 - alpha) * hard + alpha * kd_divergence(logits, teacher_logits, temperature)

    return loss_fn


def check_kd(alpha: float, temperature: float) -> None:
    if not 0 <= alpha <= 1:
        raise UserError(f"finetune.kd.alpha must be in [0, 1] (weight of the distillation term), got {alpha}")
    if temperature <= 0:
        raise UserError(f"finetune.kd.temperature must be positive, got {temperature}")
