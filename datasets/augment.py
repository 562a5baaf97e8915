"""Batched tensor augmentation for the in-memory fast path.

    from datasets.augment import AugmentSpec, draw_params, crop_flip
    spec = AugmentSpec(pad_px=4, flip=True)               # CIFAR: RandomCrop(32, padding=4) + flip
    params = draw_params(spec, num_items=len(batch_u8), generator=gen)
    batch_u8 = crop_flip(batch_u8, spec.pad_px, params)   # one gather for the whole batch

Crop and flip are one `gather` over a zero-padded copy of the batch: no per-sample Python
loop and no PIL, so it runs at memory speed on CPU and stays on the GPU when data lives there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AugmentSpec:
    """Random crop back to the input size after zero padding by `pad_px` on every side,
    and (when `flip`) a random horizontal flip with probability 1/2."""

    pad_px: int
    flip: bool


@dataclass(frozen=True)
class AugmentParams:
    """Per-sample draws: crop offsets in [0, 2 * pad_px] and flip flags."""

    shift_y_px: torch.Tensor
    shift_x_px: torch.Tensor
    flip: torch.Tensor

    def take(self, positions: torch.Tensor) -> "AugmentParams":
        return AugmentParams(self.shift_y_px[positions], self.shift_x_px[positions], self.flip[positions])

    def to(self, device: torch.device) -> "AugmentParams":
        return AugmentParams(self.shift_y_px.to(device), self.shift_x_px.to(device), self.flip.to(device))


def draw_params(spec: AugmentSpec, *, num_items: int, generator: torch.Generator) -> AugmentParams:
    """Draw one crop offset pair and flip flag per item from `generator` (CPU)."""
    shifts = torch.randint(0, 2 * spec.pad_px + 1, (2, num_items), generator=generator)
    flips = torch.rand(num_items, generator=generator) < 0.5
    if not spec.flip:
        flips = torch.zeros_like(flips)
    return AugmentParams(shifts[0], shifts[1], flips)


def crop_flip(images: torch.Tensor, pad_px: int, params: AugmentParams) -> torch.Tensor:
    """Zero-pad N x C x H x W `images` by `pad_px`, crop H x W at the per-sample offsets and
    mirror the flagged samples; output has the input's shape, dtype and device."""
    n, c, h, w = images.shape
    padded_w = w + 2 * pad_px
    padded = images.new_zeros(n, c, h + 2 * pad_px, padded_w)
    padded[:, :, pad_px : pad_px + h, pad_px : pad_px + w] = images
    rows = params.shift_y_px[:, None] + torch.arange(h, device=images.device)
    cols_plain = torch.arange(w, device=images.device).expand(n, w)
    # Flip folded into the column index: out[:, :, i, j] = crop[:, :, i, w - 1 - j].
    cols = torch.where(params.flip[:, None], w - 1 - cols_plain, cols_plain) + params.shift_x_px[:, None]
    flat = (rows[:, :, None] * padded_w + cols[:, None, :]).reshape(n, 1, h * w)
    out = padded.reshape(n, c, -1).gather(2, flat.expand(n, c, h * w))
    return out.reshape(n, c, h, w)
