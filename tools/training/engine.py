"""Training and evaluation loops shared by train, fine-tuning and every pruning script.

    >>> _ = torch.manual_seed(0)
    >>> model, cpu = nn.Linear(4, 2), torch.device("cpu")
    >>> loader = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(3)]   # any sized iterable
    >>> optimizer = build_optimizer(model.parameters(), name="sgd", lr=0.1, momentum=0.9,
    ...                             nesterov=False, weight_decay=5e-4)
    >>> scheduler = build_scheduler(optimizer, name="cosine", epochs=1, steps_per_epoch=len(loader))
    >>> stats = train_one_epoch(model, loader, optimizer, scheduler, device=cpu, step=StepOptions(grad_clip_norm=1.0))
    >>> sorted(stats)
    ['images_per_s', 'loss', 'num_samples', 'time_s', 'top1']
    >>> evaluate(model, loader, device=cpu)["num_samples"]   # also loss, top1, top5 (%), time_s
    24

Schedulers step once per batch, so warm-up and one-cycle are smooth and a resumed run continues
the schedule exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from tools.core.device import synchronize
from tools.core.errors import UserError
from tools.measure.metrics import accuracy_topk

OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("multistep", "cosine", "onecycle", "constant")
AMP_MODES = ("none", "bf16", "fp16")


# ----------------------------------------------------------------------------- environment
def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 instructions (AVX512-BF16 or AMX tiles), where oneDNN runs bf16
    convolutions natively. Elsewhere (AVX2, plain AVX-512) bf16 is emulated and slower than fp32.
    ATEN_CPU_CAPABILITY=avx2 (or default) makes it False, so tests see the same answer everywhere."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AVX512_BF16", "AMX"):
        return False
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check is not None and check() for check in checks)


def amp_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """Autocast for bf16/fp16 on CUDA, bf16 on a CPU (check_amp allows that only where it is native)."""
    if amp == "none" or device.type not in ("cuda", "cpu") or (device.type == "cpu" and amp != "bf16"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def check_amp(amp: str, device: torch.device) -> str:
    """The precision a run really uses: bf16 on a CPU only with native bf16 (measured faster there,
    docs/benchmarks.md "bf16 on this CPU"); otherwise fp32 with a warning saying why."""
    if amp not in AMP_MODES:
        raise UserError(f"unknown train.amp {amp!r}; choose one of: {', '.join(AMP_MODES)}")
    if amp == "none" or device.type == "cuda":
        return amp
    if device.type == "cpu" and amp == "bf16":
        if cpu_has_native_bf16():
            return amp
        warnings.warn(
            f"train.amp=bf16: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native bf16 "
            "(AVX512-BF16 or AMX), where bf16 is slower than fp32; training in fp32",
            stacklevel=2,
        )
        return "none"
    warnings.warn(f"train.amp={amp} needs CUDA; training in fp32 on {device.type}", stacklevel=2)
    return "none"


# ----------------------------------------------------------------------------- optimisation
def build_optimizer(
    params: Iterable[nn.Parameter],
    *,
    name: str,
    lr: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0, weight_decay=weight_decay
        )
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise UserError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    name: str,
    epochs: int,
    steps_per_epoch: int,
    milestones: list[int] | None = None,
    gamma: float = 0.1,
    warmup_epochs: int = 0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-batch schedule. `milestones` are in epochs. One-cycle brings its own warm-up."""
    total = max(1, epochs * steps_per_epoch)
    if name == "onecycle":
        max_lrs = [g["lr"] for g in optimizer.param_groups]
        pct = min(0.9, max(warmup_epochs / max(epochs, 1), 0.05)) if warmup_epochs else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lrs, total_steps=total, pct_start=pct)
    if name not in SCHEDULERS:
        raise UserError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")
    warmup = warmup_epochs * steps_per_epoch
    milestone_steps = sorted(m * steps_per_epoch for m in (milestones or []))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if name == "multistep":
            return gamma ** sum(step >= m for m in milestone_steps)
        if name == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ----------------------------------------------------------------------------- loops
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(label_smoothing: float = 0.0) -> LossFn:
    def loss_fn(logits: torch.Tensor, targets: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)

    return loss_fn


def progress_bar(iterable, total: int, desc: str):
    from tqdm import tqdm

    # Quiet when not a terminal: logs stay readable under nohup and CI.
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, disable=not sys.stderr.isatty())


def device_batches(loader, *, device: torch.device, channels_last: bool = False, desc: str = ""):
    """The batch loop shared by training and evaluation: (images, targets) on `device` (images
    channels-last when asked), behind a progress bar that stays quiet when not on a terminal."""
    for images, targets in progress_bar(loader, len(loader), desc):
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        yield images, targets.to(device, non_blocking=True)


class NonFiniteLoss(UserError):
    """The training loss became nan or inf; the caller, which knows the run folder, adds what is kept."""


@dataclass(frozen=True)
class StepOptions:
    """How each training step runs, beyond model, data and optimizer."""

    loss_fn: LossFn | None = None  # default: plain cross-entropy
    amp: str = "none"  # see AMP_MODES; "none" off CUDA
    scaler: torch.amp.GradScaler | None = None  # fp16 loss scaling
    grad_clip_norm: float = 0.0  # 0 = no clipping
    channels_last: bool = False
    after_step: Callable[[], None] | None = (
        None  # after every optimizer step (pruning masks keep pruned weights at zero)
    )


def _optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, step: StepOptions) -> None:
    optimizer.zero_grad(set_to_none=True)
    if step.scaler is not None:
        step.scaler.scale(loss).backward()
        step.scaler.unscale_(optimizer)
    else:
        loss.backward()
    if step.grad_clip_norm > 0:
        nn.utils.clip_grad_norm_(model.parameters(), step.grad_clip_norm)
    if step.scaler is not None:
        step.scaler.step(optimizer)
        step.scaler.update()
    else:
        optimizer.step()


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    scheduler=None,
    *,
    device: torch.device,
    step: StepOptions = StepOptions(),
    desc: str = "train",
) -> dict:
    """One pass over `loader`. Returns loss, top1 (%), images/s and time."""
    loss_fn = step.loss_fn or cross_entropy()
    model.train()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    start = time.perf_counter()
    for images, targets in device_batches(loader, device=device, channels_last=step.channels_last, desc=desc):
        with amp_context(device, step.amp):
            logits = model(images)
            loss = loss_fn(logits, targets, images)
        _optimizer_step(model, optimizer, loss, step)
        if scheduler is not None:
            scheduler.step()
        if step.after_step is not None:
            step.after_step()
        # Accumulate on the device: a .item() per batch would synchronise CUDA every step.
        total_loss += loss.detach() * targets.size(0)
        correct += (logits.detach().argmax(1) == targets).sum()
        seen += targets.size(0)
    synchronize(device)
    elapsed = time.perf_counter() - start
    # The running sum is the non-finite flag: checked once per epoch, not with a host sync per step.
    if not torch.isfinite(total_loss):
        raise NonFiniteLoss(
            f"{desc}: the loss became {total_loss.item()} during this epoch; lower the learning rate "
            "or set grad_clip_norm"
        )
    return {
        "loss": total_loss.item() / max(seen, 1),
        "top1": 100.0 * correct.item() / max(seen, 1),
        "images_per_s": seen / max(elapsed, 1e-9),
        "time_s": elapsed,
        "num_samples": seen,
    }


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader,
    *,
    device: torch.device,
    amp: str = "none",
    channels_last: bool = False,
    desc: str = "eval",
) -> dict:
    """Top-1/top-5 accuracy (%) and mean cross-entropy over the whole loader."""
    model.eval()
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct1 = torch.zeros((), device=device, dtype=torch.long)
    correct5 = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    start = time.perf_counter()
    for images, targets in device_batches(loader, device=device, channels_last=channels_last, desc=desc):
        with amp_context(device, amp):
            logits = model(images)
        logits = logits.float()
        total_loss += F.cross_entropy(logits, targets, reduction="sum").double()
        hits1, hits5 = accuracy_topk(logits, targets, (1, 5))
        correct1 += hits1
        correct5 += hits5
        seen += targets.size(0)
    synchronize(device)
    return {
        "loss": total_loss.item() / max(seen, 1),
        "top1": 100.0 * correct1.item() / max(seen, 1),
        "top5": 100.0 * correct5.item() / max(seen, 1),
        "num_samples": seen,
        "time_s": time.perf_counter() - start,
    }


def train_step_throughput(
    model: nn.Module, loader, *, device: torch.device, num_batches: int, lr: float = 0.01, amp: str = "none"
) -> float:
    """Images/s of full training steps (forward, backward, SGD update) on `num_batches` batches
    of `loader` (passes over it again when it is shorter), after one untimed warm-up step, under
    `amp_context(device, amp)` as given (not checked: this measures what bf16 would give). Trains a
    throwaway copy, not `model`."""
    import copy
    import itertools

    net = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    batches: list = []
    while len(batches) < num_batches + 1:
        more = list(itertools.islice(iter(loader), num_batches + 1 - len(batches)))
        if not more:
            raise ValueError("the loader yields no batches")
        batches += more

    def step(images: torch.Tensor, targets: torch.Tensor) -> None:
        with amp_context(device, amp):
            loss = F.cross_entropy(net(images.to(device)), targets.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(*batches[0])
    synchronize(device)
    start = time.perf_counter()
    for images, targets in batches[1:]:
        step(images, targets)
    synchronize(device)
    return sum(len(t) for _, t in batches[1:]) / (time.perf_counter() - start)
