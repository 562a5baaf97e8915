"""Per-sample torchvision transforms for the DataLoader path.

    from datasets.transforms import small_image_transform, imagenet_transform
    train_tf = small_image_transform(size_px=32, resize=False, augment=AugmentSpec(4, True),
                                     mean=mean, std=std)      # RandomCrop(32, 4) + flip + normalize
    eval_tf = imagenet_transform(size_px=224, train=False, mean=mean, std=std)

Both accept PIL images or C x H x W uint8 tensors and return plain float32 tensors. The
small-image recipe is the same as the fast path's batched one, so switching `fast_path`
changes speed, not the training recipe.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from datasets.augment import AugmentSpec


def small_image_transform(
    *, size_px: int, resize: bool, augment: AugmentSpec | None, mean: tuple[float, ...], std: tuple[float, ...]
) -> v2.Compose:
    """CIFAR-style: optional resize (shorter side, then centre crop) to size_px, then (train)
    RandomCrop with zero padding and optional horizontal flip, then scale and normalize."""
    steps: list = [v2.ToImage()]
    if resize:
        steps += [v2.Resize(size_px, antialias=True), v2.CenterCrop(size_px)]
    if augment is not None:
        steps.append(v2.RandomCrop(size_px, padding=augment.pad_px))
        if augment.flip:
            steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _to_normalized_tensor(mean, std))


def imagenet_transform(*, size_px: int, train: bool, mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    """ImageNet-style: RandomResizedCrop + flip for training; Resize(size * 256 / 224) then
    CenterCrop for evaluation (the usual 0.875 crop ratio)."""
    if train:
        geometry = [v2.RandomResizedCrop(size_px, antialias=True), v2.RandomHorizontalFlip()]
    else:
        geometry = [v2.Resize(round(size_px * 256 / 224), antialias=True), v2.CenterCrop(size_px)]
    # Geometry first: resizing the PIL image before tensor conversion is the cheap order.
    return v2.Compose(geometry + [v2.ToImage()] + _to_normalized_tensor(mean, std))


def _to_normalized_tensor(mean: tuple[float, ...], std: tuple[float, ...]) -> list:
    # ToPureTensor: tv_tensors.Image survives .to(device) and collation; models want plain tensors.
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std)), v2.ToPureTensor()]


def sample_stats(dataset, *, size_px: int, count: int, seed: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std ([0, 1] units) of a seeded sample of `count` images of a map-style
    (PIL image, label) dataset, each resized and centre-cropped to size_px as evaluation sees it."""
    from datasets.pixels import channel_stats

    geometry = v2.Compose([v2.ToImage(), v2.Resize(size_px, antialias=True), v2.CenterCrop(size_px)])
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count]
    images = torch.stack([geometry(dataset[int(i)][0]) for i in order])
    return channel_stats(images)
