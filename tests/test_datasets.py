"""Tests for the datasets package: determinism, augmentation, splits, sharding, sources, errors.

uv run pytest tests/test_datasets.py
"""

from __future__ import annotations

import dataclasses
import pickle
import re
import struct
import time
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torch.nn as nn
from PIL import Image

import datasets.imagefolder as imagefolder_module
from datasets import DATASET_NAMES, benchmark_loader, build_data
from datasets.augment import AugmentSpec, crop_flip, draw_params
from datasets.config import DataConfig, SyntheticConfig
from datasets.seeding import Batching, generator_for, shard
from datasets.synthetic import generate_synthetic
from datasets.tensor_loader import TensorLoader
from tools.core.errors import UserError


def synthetic_cfg(**overrides) -> DataConfig:
    """Small and fast: 300 train / 100 test images at 16 px, batches of 64, no workers."""
    settings = dict(
        name="synthetic",
        batch_size=64,
        eval_batch_size=64,
        num_workers=0,
        synthetic=SyntheticConfig(train_size=300, test_size=100, resolution=16),
    )
    return DataConfig(**{**settings, **overrides})


def collect(loader) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(loader)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


# --- synthetic data -----------------------------------------------------------------------


def test_synthetic_is_deterministic_per_seed_and_split():
    args = dict(num_classes=7, num_images=50, resolution_px=16)
    images, labels = generate_synthetic(seed=3, split="train", **args)
    again, again_labels = generate_synthetic(seed=3, split="train", **args)
    other, _ = generate_synthetic(seed=4, split="train", **args)
    test_split, _ = generate_synthetic(seed=3, split="test", **args)
    assert torch.equal(images, again) and torch.equal(labels, again_labels)
    assert not torch.equal(images, other)
    assert not torch.equal(images, test_split)
    assert images.shape == (50, 3, 16, 16) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(7))


@pytest.mark.parametrize("num_classes", [2, 100])
def test_synthetic_class_count_and_names(num_classes):
    data = build_data(synthetic_cfg(synthetic=SyntheticConfig(num_classes=num_classes, train_size=200, test_size=50)))
    assert data.num_classes == num_classes == len(set(data.classes))


def test_batches_have_expected_shape_dtype_and_normalization():
    data = build_data(synthetic_cfg())
    images, labels = next(iter(data.train))
    assert images.shape == (64, 3, 16, 16) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert data.input_shape == (3, 16, 16) and len(data.mean) == len(data.std) == 3
    all_images, _ = collect(build_data(synthetic_cfg(augment=False)).train)
    # mean/std were computed from this very training set, so it normalizes to ~0 / ~1
    assert all_images.mean((0, 2, 3)).abs().max() < 0.05
    assert (all_images.std((0, 2, 3)) - 1).abs().max() < 0.05


def test_last_partial_batch_is_kept():
    data = build_data(synthetic_cfg())  # 300 train images, batch 64
    sizes = [len(y) for _, y in data.train]
    assert len(data.train) == len(sizes) == 5 and sizes[-1] == 300 - 4 * 64
    assert data.train.batch_size == 64 and data.train.num_samples == 300


# --- epochs, augmentation, evaluation order ---------------------------------------------


def test_set_epoch_makes_batches_a_function_of_seed_and_epoch():
    first, resumed = build_data(synthetic_cfg(), seed=5), build_data(synthetic_cfg(), seed=5)
    first.train.set_epoch(0)
    _, epoch0_labels = collect(first.train)
    first.train.set_epoch(3)
    uninterrupted = collect(first.train)
    resumed.train.set_epoch(3)  # a fresh process resuming at epoch 3
    torch.manual_seed(123)  # whatever the global RNG holds must not matter
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted, collect(resumed.train)))
    assert not torch.equal(epoch0_labels, uninterrupted[1])


def test_iteration_leaves_global_rng_untouched():
    data = build_data(synthetic_cfg(fast_path=False))
    state = torch.get_rng_state()
    collect(data.train)
    collect(build_data(synthetic_cfg()).train)
    assert torch.equal(state, torch.get_rng_state())


def test_augmentation_changes_images_but_not_shape_or_order():
    augmented = build_data(synthetic_cfg())
    plain = build_data(synthetic_cfg(augment=False))
    aug_images, aug_labels = collect(augmented.train)
    plain_images, plain_labels = collect(plain.train)
    assert torch.equal(aug_labels, plain_labels)  # order depends on (seed, epoch) only
    assert aug_images.shape == plain_images.shape
    changed = (aug_images != plain_images).flatten(1).any(1).float().mean()
    assert changed > 0.7  # identical only for the centred crop without flip: 1 in 50 at 16 px


def test_crop_flip_matches_per_sample_reference():
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    params = draw_params(AugmentSpec(pad_px=2, flip=True), num_items=6, generator=generator_for(1))
    out = crop_flip(images, 2, params)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(6):
        y, x = int(params.shift_y_px[i]), int(params.shift_x_px[i])
        expected = padded[i, :, y : y + 8, x : x + 8]
        if params.flip[i]:
            expected = expected.flip(-1)
        assert torch.equal(out[i], expected)


def test_eval_loader_is_ordered_and_unaugmented():
    data = build_data(synthetic_cfg())
    syn = synthetic_cfg().synthetic
    raw, raw_labels = generate_synthetic(
        num_classes=syn.num_classes,
        num_images=syn.test_size,
        resolution_px=syn.resolution,
        seed=syn.seed,
        split="test",
    )
    images, labels = collect(data.test)
    assert torch.equal(labels, raw_labels)
    mean, std = torch.tensor(data.mean).view(1, 3, 1, 1), torch.tensor(data.std).view(1, 3, 1, 1)
    assert torch.allclose(images, (raw.float() / 255 - mean) / std, atol=1e-5)
    data.test.set_epoch(7)
    assert torch.equal(collect(data.test)[0], images)
    assert data.val is data.test  # no val_split: validation uses the test split


# --- splits, subsets, shards ------------------------------------------------------------


def test_val_split_is_disjoint_unaugmented_and_sized():
    data = build_data(synthetic_cfg(val_split=0.2))
    assert data.train.num_samples == 240 and data.val.num_samples == 60
    train_ids, val_ids = set(data.train.indices.tolist()), set(data.val.indices.tolist())
    assert not train_ids & val_ids and train_ids | val_ids == set(range(300))
    assert data.val.augment is None and not data.val.shuffle
    assert data.test.num_samples == 100


def test_subsets_are_seeded_and_val_does_not_depend_on_train_subset():
    small = build_data(synthetic_cfg(train_subset=50, test_subset=30, val_split=0.2), seed=1)
    again = build_data(synthetic_cfg(train_subset=50, test_subset=30, val_split=0.2), seed=1)
    full = build_data(synthetic_cfg(val_split=0.2), seed=1)
    assert small.train.num_samples == 50 and small.test.num_samples == 30
    assert torch.equal(small.train.indices, again.train.indices)
    assert set(small.train.indices.tolist()) <= set(full.train.indices.tolist())
    assert torch.equal(small.val.indices, full.val.indices)


def id_images(num_images: int) -> torch.Tensor:
    """Images whose first two pixels spell their own index (little-endian bytes)."""
    images = torch.zeros(num_images, 1, 4, 4, dtype=torch.uint8)
    ids = torch.arange(num_images)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = (ids % 256).to(torch.uint8), (ids // 256).to(torch.uint8)
    return images


def loader_ids(loader: TensorLoader) -> list[int]:
    ids = []
    for images, _ in loader:
        raw = images[:, 0, 0, :2].round().long()  # mean 0, std 1/255 -> raw byte values
        ids += (raw[:, 0] + 256 * raw[:, 1]).tolist()
    return ids


@pytest.mark.parametrize("shuffle", [True, False])
def test_rank_shards_are_disjoint_and_cover_everything(shuffle):
    num_images, world = 301, 4
    images = id_images(num_images)
    shards = [
        loader_ids(
            TensorLoader(
                images,
                torch.zeros(num_images, dtype=torch.int64),
                torch.arange(num_images),
                Batching(batch_size=16, shuffle=shuffle, seed=2, rank=rank, world_size=world),
                augment=None,
                mean=(0.0,),
                std=(1 / 255,),
            )
        )
        for rank in range(world)
    ]
    everything = [i for ids in shards for i in ids]
    assert set(everything) == set(range(num_images))
    if shuffle:  # train: padded to equal length, duplicates only from padding
        assert [len(ids) for ids in shards] == [76] * world and len(everything) - num_images == 3
    else:  # eval: exact partition
        assert sorted(everything) == list(range(num_images))


def test_build_shards_train_but_gives_every_rank_the_whole_eval_split():
    bundles = [build_data(synthetic_cfg(val_split=0.1), rank=rank, world_size=2) for rank in range(2)]
    train_ids = [set(b.train.indices[b.train._positions()].tolist()) for b in bundles]
    assert not train_ids[0] & train_ids[1] and len(train_ids[0] | train_ids[1]) == 270
    assert all(b.train.num_samples == 135 for b in bundles)
    assert all(b.test.num_samples == 100 and b.val.num_samples == 30 for b in bundles)


def test_shard_padding_follows_distributed_sampler():
    order = torch.arange(10)
    assert shard(order, rank=1, world_size=4, pad=True).tolist() == [1, 5, 9]
    assert shard(order, rank=3, world_size=4, pad=True).tolist() == [3, 7, 1]
    assert shard(order, rank=3, world_size=4, pad=False).tolist() == [3, 7]


# --- DataLoader path --------------------------------------------------------------------


def test_dataloader_path_with_workers_is_resumable():
    cfg = synthetic_cfg(fast_path=False, num_workers=2)
    first, resumed = build_data(cfg, seed=9), build_data(cfg, seed=9)
    for epoch in range(3):  # persistent workers carry RNG state from epoch to epoch
        first.train.set_epoch(epoch)
        uninterrupted = collect(first.train)
    resumed.train.set_epoch(2)
    again = collect(resumed.train)
    assert torch.equal(uninterrupted[1], again[1]) and torch.equal(uninterrupted[0], again[0])
    images, labels = again
    assert images.shape == (300, 3, 16, 16) and images.dtype == torch.float32 and labels.dtype == torch.int64
    # same labels order as the fast path: shuffling is shared code
    fast = build_data(synthetic_cfg(), seed=9)
    fast.train.set_epoch(2)
    assert torch.equal(collect(fast.train)[1], labels)


# --- image folders ----------------------------------------------------------------------


def make_image_tree(root: Path, splits=("train", "val"), per_class: int = 5) -> Path:
    colours = {"cat": (200, 40, 40), "dog": (40, 40, 200), "fox": (40, 200, 40)}
    for split in splits:
        for c, (name, rgb) in enumerate(colours.items()):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                image = Image.new("RGB", (40, 30), tuple(min(255, v + 5 * i) for v in rgb))
                image.save(folder / f"{i}.{'png' if (i + c) % 2 else 'jpg'}")
    return root


def test_imagefolder_fast_path_decodes_once_then_uses_cache(tmp_path, monkeypatch):
    root = make_image_tree(tmp_path / "imgs")
    cfg = DataConfig(
        name="imagefolder",
        root=str(root),
        image_size=16,
        batch_size=4,
        num_workers=0,
        cache_dir=str(tmp_path / "cache"),
    )
    data = build_data(cfg)
    assert data.classes == ["cat", "dog", "fox"] and data.input_shape == (3, 16, 16)
    assert data.train.num_samples == 15 and data.test.num_samples == 15 and data.val is data.test
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2
    images, labels = collect(data.test)
    assert images.shape == (15, 3, 16, 16) and labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(imagefolder_module, "decode_files", no_decoding)
    cached = build_data(cfg)
    assert torch.equal(collect(cached.test)[0], images) and cached.mean == data.mean
    (root / "train" / "cat" / "0.jpg").unlink()  # a changed folder must not reuse the old cache
    with pytest.raises(AssertionError, match="decoded again"):
        build_data(cfg)


def test_imagefolder_pool_decode_keeps_order_and_reports_bad_files(tmp_path, monkeypatch):
    root = make_image_tree(tmp_path / "imgs")
    monkeypatch.setattr(imagefolder_module, "_DECODE_CHUNK_FILES", 4)  # several chunks -> process pool
    cfg = DataConfig(name="imagefolder", root=str(root), image_size=16, num_workers=2, cache_dir=str(tmp_path / "c"))
    pooled = collect(build_data(cfg).test)
    in_process = collect(build_data(dataclasses.replace(cfg, num_workers=0, cache_dir=str(tmp_path / "d"))).test)
    assert torch.equal(pooled[0], in_process[0]) and torch.equal(pooled[1], in_process[1])
    bad = root / "train" / "dog" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match=re.escape(str(bad))):
        build_data(cfg)


def test_imagefolder_dataloader_path_small_and_large(tmp_path):
    root = make_image_tree(tmp_path / "imgs", splits=("train", "val", "test"), per_class=2)
    small = build_data(
        DataConfig(name="imagefolder", root=str(root), image_size=16, fast_path=False, batch_size=4, num_workers=0)
    )
    images, labels = next(iter(small.train))
    assert images.shape == (4, 3, 16, 16) and labels.dtype == torch.int64
    assert small.val is not small.test and small.val.num_samples == small.test.num_samples == 6
    large = build_data(DataConfig(name="imagefolder", root=str(root), image_size=72, batch_size=4, num_workers=0))
    assert isinstance(large.train, type(small.train))  # above 64 px: DataLoader path even with fast_path
    images, _ = next(iter(large.test))
    assert images.shape == (6, 3, 72, 72) and images.dtype == torch.float32  # eval_batch_size 512 > 6


def test_imagefolder_missing_split_names_the_path(tmp_path):
    root = make_image_tree(tmp_path / "imgs", splits=("train",), per_class=1)
    with pytest.raises(UserError, match=re.escape(str(root.resolve()))) as err:
        build_data(DataConfig(name="imagefolder", root=str(root), image_size=16))
    assert "val/" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="does not exist"):
        build_data(DataConfig(name="imagefolder", root=str(tmp_path / "nowhere")))


# --- torchvision sets and errors --------------------------------------------------------


def write_fake_cifar10(root: Path, per_batch: int = 8) -> None:
    """The on-disk layout torchvision reads (integrity checks are patched off by the caller)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = torch.randint(0, 256, (per_batch, 3072), dtype=torch.uint8, generator=gen).numpy()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": [i % 10 for i in range(per_batch)]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)


def write_fake_mnist(root: Path, count: int = 20) -> None:
    """idx files as torchvision's MNIST expects them in MNIST/raw (magic 0x0803 / 0x0801)."""
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for prefix in ("train", "t10k"):
        images = torch.randint(0, 256, (count, 28, 28), dtype=torch.uint8, generator=gen)
        header = struct.pack(">IIII", 0x0803, count, 28, 28)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.numpy().tobytes())
        labels = bytes(i % 10 for i in range(count))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, count) + labels)


@pytest.mark.parametrize(("name", "shape"), [("cifar10", (3, 32, 32)), ("mnist", (1, 28, 28))])
def test_torchvision_sets_from_a_local_copy_agree_across_paths(tmp_path, monkeypatch, name, shape):
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args, **kwargs: True)  # no md5s
    (write_fake_cifar10 if name == "cifar10" else write_fake_mnist)(tmp_path)
    cfg = DataConfig(name=name, root=str(tmp_path), download=False, num_workers=0, batch_size=8)
    fast, slow = build_data(cfg), build_data(dataclasses.replace(cfg, fast_path=False))
    assert fast.input_shape == slow.input_shape == shape and fast.num_classes == 10
    fast_images, fast_labels = collect(fast.test)
    slow_images, slow_labels = collect(slow.test)
    assert torch.equal(fast_labels, slow_labels) and torch.allclose(fast_images, slow_images, atol=1e-5)
    train_images, train_labels = next(iter(slow.train))
    assert train_images.shape == (8, *shape) and train_labels.dtype == torch.int64


def test_missing_torchvision_set_without_download(tmp_path):
    with pytest.raises(UserError) as err:
        build_data(DataConfig(name="cifar10", root=str(tmp_path), download=False))
    message = str(err.value)
    assert "CIFAR-10" in message and str(tmp_path.resolve()) in message and "data.root" in message
    assert "\n" not in message


@pytest.mark.parametrize(("name", "module"), [("cifar100", "cifar"), ("mnist", "mnist")])
def test_failed_download_becomes_one_line_user_error(tmp_path, monkeypatch, name, module):
    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(f"torchvision.datasets.{module}.download_and_extract_archive", offline)
    # fails at once: no back-off waits (checked by their absence, not a wall clock a busy CI skews)
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail(f"waited {s} s before giving up"))
    with pytest.raises(UserError) as err:
        build_data(DataConfig(name=name, root=str(tmp_path), download=True))
    message = str(err.value)
    assert str(tmp_path.resolve()) in message and "internet access" in message and "\n" not in message


def test_unknown_name_suggests_closest():
    with pytest.raises(UserError, match="did you mean 'cifar10'"):
        build_data(DataConfig(name="cifar-10"))
    with pytest.raises(UserError, match="did you mean 'fashionmnist'"):
        build_data(DataConfig(name="fashion_mnist"))
    assert "synthetic" in DATASET_NAMES


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"val_split": 1.0}, "data.val_split"),
        ({"batch_size": 0}, "data.batch_size"),
        ({"synthetic": SyntheticConfig(num_classes=1)}, "data.synthetic.num_classes"),
    ],
)
def test_bad_config_values_raise_user_error(overrides, field):
    with pytest.raises(UserError, match=re.escape(field)):
        build_data(DataConfig(name="synthetic", **overrides))


def test_benchmark_loader_reports_images_per_second():
    data = build_data(synthetic_cfg())
    assert benchmark_loader(data.train, num_batches=12) > 0  # more batches than one epoch: cycles


# --- learnability -----------------------------------------------------------------------


def test_synthetic_is_learnable_by_a_tiny_cnn():
    torch.manual_seed(0)
    syn = SyntheticConfig(num_classes=10, train_size=1500, test_size=400, resolution=32)
    data = build_data(DataConfig(name="synthetic", batch_size=64, synthetic=syn), seed=0)

    def block(c_in: int, c_out: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))

    model = nn.Sequential(
        block(3, 16), block(16, 32), block(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(3):
        data.train.set_epoch(epoch)
        for images, labels in data.train:
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in data.test)
    accuracy = correct / data.test.num_samples
    assert accuracy > 0.3, f"accuracy {accuracy:.2f} is too close to chance (0.10)"
    assert accuracy < 0.99, "3 epochs should not solve it: the data set is too easy for pruning experiments"
