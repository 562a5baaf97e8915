"""Train/val/test loaders for every supported data set, from one DataConfig.

    from datasets import build_data
    data = build_data(cfg.data, seed=cfg.seed, device="cuda")
    model = make_model(num_classes=data.num_classes, input_shape=data.input_shape)
    for epoch in range(start_epoch, epochs):
        data.train.set_epoch(epoch)            # order + augmentation = f(seed, epoch): resumable
        for images, labels in data.train: ...  # float32 NCHW normalized, int64, already on device
    accuracy = evaluate(model, data.val)       # held-out train part if val_split > 0, else test

Two loader kinds share one protocol (iterate, len, set_epoch, batch_size, num_samples):
the fast path keeps a whole split as a uint8 tensor on `device` and augments whole batches
with tensor ops (torchvision sets, synthetic, image folders up to 64 px); the DataLoader path
(`fast_path: false`, or larger image folders) decodes and transforms per sample in workers.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from datasets import imagefolder, packed, synthetic
from datasets.augment import AugmentSpec
from datasets.pixels import channel_stats, resize_images_u8
from datasets.seeding import Batching, split_indices, subset_indices
from datasets.tensor_loader import TensorLoader
from datasets.torch_loader import TensorImages, TorchLoader
from datasets.torchvision_sets import TORCHVISION_SETS, open_split, to_uint8_tensors
from datasets.transforms import imagenet_transform, sample_stats, small_image_transform
from tools.core.errors import UserError

if TYPE_CHECKING:
    from datasets.config import DataConfig

DATASET_NAMES = ("cifar10", "cifar100", "mnist", "fashionmnist", "imagefolder", "packed", "synthetic")
IMAGE_FILE_SETS = ("imagefolder", "packed")  # encoded image files: decoded at data.image_size
FAST_PATH_MAX_IMAGEFOLDER_PX = 64  # above this a decoded folder stops fitting comfortably in memory
IMAGEFOLDER_NATIVE_PX = 224

Loader = TensorLoader | TorchLoader


@dataclass
class DataBundle:
    """Loaders and the facts a model needs. `val` is the held-out part of the training set
    (unaugmented) when data.val_split > 0; otherwise it is the test loader itself (for image
    folders holding both val/ and test/: the val/ folder). Train batches keep the last partial
    batch; with world_size > 1 every rank gets a disjoint shard of the shuffled training set
    (padded to equal length, as DistributedSampler), while eval loaders give every rank the
    whole split."""

    train: Loader
    val: Loader
    test: Loader
    num_classes: int
    input_shape: tuple[int, int, int]  # C, H, W
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass
class TensorSplit:
    images_u8: torch.Tensor  # N x C x H x W
    labels: torch.Tensor  # N int64

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class _Source:
    """A data set before batching: splits ("train", "test", maybe "val") as TensorSplit
    (fast path) or map-style datasets (DataLoader path), plus how to augment and normalize."""

    splits: dict[str, Any]
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_shape: tuple[int, int, int]
    augment: AugmentSpec
    train_transform: Any = None  # DataLoader path only
    eval_transform: Any = None
    recipe: str = (
        ""  # DataLoader path: "small" | "small-resize" | "imagenet" (transforms built once normalization is known)
    )
    normalize: str = "dataset"  # what mean/std are, for the printed line


def build_data(
    cfg: DataConfig,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    rank: int = 0,
    world_size: int = 1,
) -> DataBundle:
    """Load `cfg.name` and wrap its splits in loaders; `seed` drives the val split, subsets,
    shuffling and augmentation (every rank must pass the same seed, or the shards overlap);
    fast-path tensors are moved to `device` once."""
    name = resolve_name(cfg.name)
    validate_config(cfg, name)
    size_px = target_size_px(cfg, name)
    fast = use_fast_path(cfg, name, size_px)
    source = _load_source(cfg, name, size_px=size_px, fast=fast)
    _normalize(source, cfg, name)
    _build_transforms(source)
    print(describe(source, cfg, name))
    if fast:  # once, up front: batches are then cut on the device (GPU-resident when on CUDA)
        source.splits = {k: TensorSplit(s.images_u8.to(device), s.labels.to(device)) for k, s in source.splits.items()}
    train, val, test = _make_loaders(source, cfg, seed=seed, device=device, rank=rank, world_size=world_size)
    return DataBundle(
        train, val, test, len(source.classes), source.input_shape, source.classes, source.mean, source.std
    )


def _make_loaders(
    source: _Source, cfg: DataConfig, *, seed: int, device: torch.device | str, rank: int, world_size: int
) -> tuple[Loader, Loader, Loader]:
    """(train, val, test); val is the held-out train part, else an explicit val/ folder, else test."""
    make = dict(cfg=cfg, source=source, seed=seed, device=device, shard=(rank, world_size))
    train_idx, val_idx = _train_val_indices(len(source.splits["train"]), cfg, seed)
    train_idx = subset_indices(train_idx, size=cfg.train_subset, seed=seed, stream="train")
    train = _loader("train", train_idx, train=True, **make)
    test = _loader("test", _eval_indices(source, "test", cfg, seed), train=False, **make)
    if val_idx is not None:
        val = _loader("train", val_idx, train=False, **make)
    elif "val" in source.splits:
        val = _loader("val", _eval_indices(source, "val", cfg, seed), train=False, **make)
    else:
        val = test
    return train, val, test


def resolve_name(name: str) -> str:
    """The canonical data set name, or UserError naming the closest valid one."""
    key = name.lower()
    if key in DATASET_NAMES:
        return key
    closest = difflib.get_close_matches(key.replace("-", "").replace("_", ""), DATASET_NAMES, n=1, cutoff=0.0)
    raise UserError(f"unknown data set '{name}'; did you mean '{closest[0]}'? (valid: {', '.join(DATASET_NAMES)})")


def validate_config(cfg: DataConfig, name: str) -> None:
    problems = [
        (cfg.batch_size < 1, f"data.batch_size={cfg.batch_size} must be at least 1"),
        (cfg.eval_batch_size < 1, f"data.eval_batch_size={cfg.eval_batch_size} must be at least 1"),
        (cfg.num_workers < 0, f"data.num_workers={cfg.num_workers} must be 0 or more"),
        (not 0.0 <= cfg.val_split < 1.0, f"data.val_split={cfg.val_split} must be in [0, 1), e.g. 0.1"),
        (cfg.image_size < 0, f"data.image_size={cfg.image_size} must be 0 (native) or a size in pixels"),
        (cfg.train_subset < 0, f"data.train_subset={cfg.train_subset} must be 0 (all) or a count"),
        (cfg.test_subset < 0, f"data.test_subset={cfg.test_subset} must be 0 (all) or a count"),
    ]
    if name == "synthetic":
        syn = cfg.synthetic
        problems += [
            (
                not 2 <= syn.num_classes <= synthetic.MAX_CLASSES,
                f"data.synthetic.num_classes={syn.num_classes} must be in 2..{synthetic.MAX_CLASSES}",
            ),
            (syn.train_size < 1, f"data.synthetic.train_size={syn.train_size} must be at least 1"),
            (syn.test_size < 1, f"data.synthetic.test_size={syn.test_size} must be at least 1"),
            (syn.resolution < 8, f"data.synthetic.resolution={syn.resolution} must be at least 8 pixels"),
        ]
    for bad, message in problems:
        if bad:
            raise UserError(message)


def target_size_px(cfg: DataConfig, name: str) -> int:
    """cfg.image_size, or the data set's native size when it is 0."""
    if cfg.image_size > 0:
        return cfg.image_size
    if name in TORCHVISION_SETS:
        return TORCHVISION_SETS[name].native_px
    return cfg.synthetic.resolution if name == "synthetic" else IMAGEFOLDER_NATIVE_PX


def use_fast_path(cfg: DataConfig, name: str, size_px: int) -> bool:
    if not cfg.fast_path:
        return False
    return name not in IMAGE_FILE_SETS or size_px <= FAST_PATH_MAX_IMAGEFOLDER_PX


def _load_source(cfg: DataConfig, name: str, *, size_px: int, fast: bool) -> _Source:
    if name in TORCHVISION_SETS:
        return _torchvision_source(cfg, name, size_px=size_px, fast=fast)
    if name == "synthetic":
        return _synthetic_source(cfg, size_px=size_px, fast=fast)
    if name == "packed":
        return _packed_source(cfg, size_px=size_px, fast=fast)
    return _imagefolder_source(cfg, size_px=size_px, fast=fast)


def _torchvision_source(cfg: DataConfig, name: str, *, size_px: int, fast: bool) -> _Source:
    spec = TORCHVISION_SETS[name]
    raw = {
        split: open_split(name, root=cfg.root, train=split == "train", download=cfg.download)
        for split in ("train", "test")
    }
    augment = AugmentSpec(max(1, round(spec.augment.pad_px * size_px / spec.native_px)), spec.augment.flip)
    channels = 1 if name in ("mnist", "fashionmnist") else 3
    source = _Source({}, list(raw["train"].classes), spec.mean, spec.std, (channels, size_px, size_px), augment)
    if fast:
        source.splits = {split: _resized_tensor_split(ds, size_px) for split, ds in raw.items()}
        return source
    source.splits = raw
    return _with_small_transforms(source, resize=size_px != spec.native_px)


def _resized_tensor_split(dataset: Any, size_px: int) -> TensorSplit:
    images_u8, labels = to_uint8_tensors(dataset)
    return TensorSplit(resize_images_u8(images_u8, size_px=size_px), labels)


def _synthetic_source(cfg: DataConfig, *, size_px: int, fast: bool) -> _Source:
    syn = cfg.synthetic
    splits = {}
    for split, count in (("train", syn.train_size), ("test", syn.test_size)):
        images, labels = synthetic.generate_synthetic(
            num_classes=syn.num_classes, num_images=count, resolution_px=syn.resolution, seed=syn.seed, split=split
        )
        splits[split] = TensorSplit(resize_images_u8(images, size_px=size_px), labels)
    mean, std = channel_stats(splits["train"].images_u8)
    source = _Source(
        splits, synthetic.class_names(syn.num_classes), mean, std, (3, size_px, size_px), _small_augment(size_px)
    )
    if fast:
        return source
    source.splits = {split: TensorImages(s.images_u8, s.labels) for split, s in splits.items()}
    return _with_small_transforms(source, resize=False)


def _imagefolder_source(cfg: DataConfig, *, size_px: int, fast: bool) -> _Source:
    classes, files = imagefolder.list_splits(cfg.root)
    files = _test_from_val(files)
    if fast:
        decoded = {
            split: imagefolder.load_decoded(
                split_files,
                root=cfg.root,
                split=split,
                size_px=size_px,
                cache_dir=cfg.cache_dir,
                num_workers=cfg.num_workers,
            )
            for split, split_files in files.items()
        }
        return _decoded_source(decoded, classes, size_px)
    return _image_file_source({split: imagefolder.ImageFiles(f) for split, f in files.items()}, classes, size_px)


def _packed_source(cfg: DataConfig, *, size_px: int, fast: bool) -> _Source:
    """An image folder packed by scripts.pack_data: the same splits, files and tensors."""
    pack = packed.read_pack(cfg.root)
    splits = _test_from_val(pack.splits)
    if fast:
        decoded = {
            name: packed.load_decoded(
                split, path=cfg.root, name=name, size_px=size_px, cache_dir=cfg.cache_dir, num_workers=cfg.num_workers
            )
            for name, split in splits.items()
        }
        return _decoded_source(decoded, pack.classes, size_px)
    return _image_file_source({name: packed.PackedImages(s) for name, s in splits.items()}, pack.classes, size_px)


def _test_from_val(splits: dict[str, Any]) -> dict[str, Any]:
    """Only val/ on disk: it is the test split too."""
    if "test" in splits:
        return splits
    splits = dict(splits)
    splits["test"] = splits.pop("val")
    return splits


def _decoded_source(decoded: dict[str, imagefolder.DecodedSplit], classes: list[str], size_px: int) -> _Source:
    splits = {split: TensorSplit(d.images_u8, d.labels) for split, d in decoded.items()}
    return _Source(
        splits, classes, decoded["train"].mean, decoded["train"].std, (3, size_px, size_px), _small_augment(size_px)
    )


def _image_file_source(splits: dict[str, Any], classes: list[str], size_px: int) -> _Source:
    """The DataLoader path over encoded images: decoded and transformed per sample in workers."""
    # mean/std: the training images' statistics are computed by _normalize, only when asked for
    source = _Source(splits, classes, (), (), (3, size_px, size_px), _small_augment(size_px))
    if size_px <= FAST_PATH_MAX_IMAGEFOLDER_PX:  # same recipe as the fast path would use
        return _with_small_transforms(source, resize=True)
    source.recipe = "imagenet"
    return source


def _small_augment(size_px: int) -> AugmentSpec:
    """CIFAR's recipe scaled to the image size: pad by 1/8 of the side (4 px at 32 px) + flip."""
    return AugmentSpec(pad_px=max(1, size_px // 8), flip=True)


def _with_small_transforms(source: _Source, *, resize: bool) -> _Source:
    source.recipe = "small-resize" if resize else "small"
    return source


def _build_transforms(source: _Source) -> None:
    """The DataLoader path's per-sample transforms, with the mean/std `_normalize` chose."""
    size_px, norm = source.input_shape[-1], dict(mean=source.mean, std=source.std)
    if source.recipe == "imagenet":
        source.train_transform = imagenet_transform(size_px=size_px, train=True, **norm)
        source.eval_transform = imagenet_transform(size_px=size_px, train=False, **norm)
    elif source.recipe:
        common = dict(size_px=size_px, resize=source.recipe == "small-resize", **norm)
        source.train_transform = small_image_transform(augment=source.augment, **common)
        source.eval_transform = small_image_transform(augment=None, **common)


def _train_val_indices(num_train: int, cfg: DataConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """All training indices, or a seeded (train, val) split when val_split > 0. The split is
    made before train_subset, so the validation set does not change with the subset size."""
    if cfg.val_split == 0:
        return torch.arange(num_train), None
    train_idx, val_idx = split_indices(num_train, val_fraction=cfg.val_split, seed=seed)
    if len(val_idx) == 0 or len(train_idx) == 0:
        raise UserError(
            f"data.val_split={cfg.val_split} of {num_train} training images leaves an empty split; choose a value "
            f"between {1 / num_train:.3g} and {1 - 1 / num_train:.3g}"
        )
    return train_idx, val_idx


def _eval_indices(source: _Source, split: str, cfg: DataConfig, seed: int) -> torch.Tensor:
    return subset_indices(torch.arange(len(source.splits[split])), size=cfg.test_subset, seed=seed, stream=split)


def _loader(
    split: str,
    indices: torch.Tensor,
    *,
    train: bool,
    cfg: DataConfig,
    source: _Source,
    seed: int,
    device: torch.device | str,
    shard: tuple[int, int],
) -> Loader:
    """Train loaders shuffle, augment (if cfg.augment) and take this rank's shard; eval loaders
    do none of these: every rank sees the whole split, so all ranks compute the same metrics
    (and take the same early-stopping decisions) without a collective."""
    data = source.splits[split]
    augmented = train and cfg.augment
    rank, world_size = shard if train else (0, 1)
    batching = Batching(
        batch_size=cfg.batch_size if train else cfg.eval_batch_size,
        shuffle=train,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )
    if isinstance(data, TensorSplit):
        return TensorLoader(
            data.images_u8,
            data.labels,
            indices,
            batching,
            augment=source.augment if augmented else None,
            mean=source.mean,
            std=source.std,
        )
    transform = source.train_transform if augmented else source.eval_transform
    return TorchLoader(data, transform, indices, batching, num_workers=cfg.num_workers, device=device)


# ----------------------------------------------------------------------------- normalization
STATS_SAMPLE = 512  # DataLoader path over image files: statistics of a seeded sample (decoding all would take long)


def _normalize(source: _Source, cfg: DataConfig, name: str) -> None:
    """One rule for both loader paths (data.normalize, data.mean/std): explicit mean/std, else the
    preset; 'dataset' keeps what the source computed (torchvision sets' published statistics, the
    decoded training images'), computing it for image files read per sample."""
    channels = source.input_shape[0]
    if cfg.mean:
        mean, std, source.normalize = tuple(cfg.mean), tuple(cfg.std), "data.mean/std"
    elif cfg.normalize == "imagenet":
        mean, std, source.normalize = imagefolder.IMAGENET_MEAN, imagefolder.IMAGENET_STD, "imagenet"
    elif cfg.normalize == "none":
        mean, std, source.normalize = (0.0,) * channels, (1.0,) * channels, "none"
    else:
        if not source.mean:
            source.mean, source.std = sample_stats(
                source.splits["train"], size_px=source.input_shape[-1], count=STATS_SAMPLE, seed=0
            )
        mean, std, source.normalize = source.mean, source.std, "dataset"
    if len(mean) != channels:
        raise UserError(
            f"{source.normalize} normalization has {len(mean)} channel(s) but {name} images have "
            f"{channels}; set data.mean and data.std with {channels} value(s) each, or data.normalize=dataset"
        )
    source.mean, source.std = tuple(float(m) for m in mean), tuple(float(v) for v in std)


def describe(source: _Source, cfg: DataConfig, name: str) -> str:
    """The run's normalization and training augmentation, e.g. 'normalize: cifar10 dataset mean
    (0.4914, 0.4822, 0.4465) std (0.247, 0.2435, 0.2616); augmentation: pad 4 px + flip'."""

    def fmt(values):
        return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"

    if not cfg.augment:
        augment = "off"
    elif source.recipe == "imagenet":
        augment = f"RandomResizedCrop + flip (ImageNet recipe: image files above {FAST_PATH_MAX_IMAGEFOLDER_PX} px)"
    else:
        augment = f"pad {source.augment.pad_px} px + {'flip' if source.augment.flip else 'no flip'}"
    return (
        f"normalize: {name} {source.normalize} mean {fmt(source.mean)} std {fmt(source.std)} "
        f"(data.normalize / data.mean / data.std); augmentation: {augment}"
    )
