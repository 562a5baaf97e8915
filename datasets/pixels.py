"""uint8 image tensor helpers: normalization, per-channel statistics, one-off resizing.

from datasets.pixels import Normalizer, channel_stats, resize_images_u8
mean, std = channel_stats(train_u8)                 # per-channel, in [0, 1] units
images = Normalizer(mean, std, device).apply(batch_u8)
train_u8 = resize_images_u8(train_u8, size_px=64)  # once, before training
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_CHUNK_IMAGES = 4096  # keeps float copies of large uint8 sets bounded (4096 x 3 x 64 x 64 x 4 B = 200 MB)


class Normalizer:
    """uint8 [0, 255] -> float32 `(x / 255 - mean) / std`, folded into one multiply-add."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device):
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.bias = -mean_t / std_t

    def apply(self, images_u8: torch.Tensor) -> torch.Tensor:
        # In-place on the fresh float copy: ~4x faster on CPU than addcmul with broadcasting.
        return images_u8.to(torch.float32).mul_(self.scale).add_(self.bias)


def channel_stats(images_u8: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of N x C x H x W uint8 images, in [0, 1] units (float64 sums
    over chunks, so a 50k-image set needs no full float copy)."""
    channels = images_u8.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    for chunk in images_u8.split(_CHUNK_IMAGES):
        values = chunk.to(torch.float64).transpose(0, 1).reshape(channels, -1) / 255.0
        total += values.sum(1).cpu()
        total_sq += (values * values).sum(1).cpu()
    count = max(images_u8.numel() // max(channels, 1), 1)
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def resize_images_u8(images_u8: torch.Tensor, *, size_px: int) -> torch.Tensor:
    """Antialiased bilinear resize of square N x C x H x W uint8 images to size_px x size_px."""
    if images_u8.shape[-1] == size_px and images_u8.shape[-2] == size_px:
        return images_u8
    chunks = [
        F.interpolate(chunk.float(), size=(size_px, size_px), mode="bilinear", antialias=True, align_corners=False)
        .round()
        .clamp(0, 255)
        .to(torch.uint8)
        for chunk in images_u8.split(_CHUNK_IMAGES)
    ]
    return torch.cat(chunks) if chunks else images_u8.new_zeros(0, images_u8.shape[1], size_px, size_px)
