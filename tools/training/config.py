"""The `train:` and `finetune:` sections of the config (read by tools.training.fit and engine, and
by the pruning runs' fine-tuning), registered with tools.core.config.

    >>> TrainConfig().milestones, FinetuneConfig().kd.temperature
    ([50, 75], 4.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.core.config import Bound, config_section


def _check_optimisation(bound: Bound) -> None:
    """The optimiser keys train and finetune share."""
    bound("momentum", ge=0, lt=1)
    bound("weight_decay", ge=0)
    bound("milestones", ge=0, why="epochs")
    bound("gamma", gt=0, le=1, why="multistep decay factor")
    bound("warmup_epochs", ge=0)
    bound("label_smoothing", ge=0, lt=1)
    bound("grad_clip_norm", ge=0, why="0 = off")
    bound("patience", ge=0, why="0 = off")


@config_section("train")
@dataclass
class TrainConfig:
    epochs: int = 100
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: float = 5e-4
    scheduler: str = "multistep"  # multistep | cosine | onecycle | constant
    milestones: list[int] = field(default_factory=lambda: [50, 75])  # multistep, in epochs
    gamma: float = 0.1  # multistep decay factor
    warmup_epochs: int = 0  # linear warm-up before multistep/cosine
    label_smoothing: float = 0.0
    grad_clip_norm: float = 0.0  # 0 disables gradient clipping
    amp: str = "none"  # none | bf16 | fp16 (CUDA; bf16 also on CPUs with native bf16, else fp32 with a warning)
    channels_last: bool = False  # CUDA only
    patience: int = 0  # early stopping after this many epochs without val improvement; 0 = off
    seed: int = 0
    deterministic: bool = False  # deterministic algorithms (bit-exact resume on CPU)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    num_threads: int = 0  # CPU intra-op threads; 0 = torch's default (1 is fastest on a busy machine)

    def check(self, bound: Bound) -> None:
        bound("epochs", ge=1)
        bound("lr", gt=0)
        _check_optimisation(bound)
        bound("num_threads", ge=0, le=4096, why="0 = torch's default")
        bound("seed", ge=0, lt=2**32)


@dataclass
class KDConfig:
    alpha: float = 0.0  # weight of the distillation loss from the unpruned model; 0 = off
    temperature: float = 4.0  # softmax temperature of teacher and student

    def check(self, bound: Bound) -> None:
        bound("alpha", ge=0, le=1, why="weight of the distillation term")
        bound("temperature", gt=0)


@config_section("finetune")
@dataclass
class FinetuneConfig:
    """Optimisation after pruning; device, seed, amp and determinism come from `train`."""

    epochs: int = 10
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.0  # 0 -> one tenth of train.lr
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    scheduler: str = "cosine"  # multistep | cosine | onecycle | constant
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    grad_clip_norm: float = 0.0
    patience: int = 0
    kd: KDConfig = field(default_factory=KDConfig)

    def check(self, bound: Bound) -> None:
        bound("epochs", ge=0, why="0 = no fine-tuning")
        bound("lr", ge=0, why="0 = one tenth of train.lr")
        _check_optimisation(bound)
