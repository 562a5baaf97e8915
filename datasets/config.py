"""The `data:` section of the config (read by datasets.build), registered with tools.core.config.

>>> cfg = DataConfig(name="synthetic", batch_size=64)
>>> cfg.synthetic.resolution, cfg.normalize
(32, 'dataset')
>>> legacy_normalize({"data": {"name": "imagefolder", "fast_path": False}})["data"]["normalize"]
'imagenet'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tools.core.config import Bound, config_section
from tools.core.errors import UserError


@dataclass
class SyntheticConfig:
    num_classes: int = 10  # classes of the procedurally generated data set
    train_size: int = 5000
    test_size: int = 1000
    resolution: int = 32  # images are resolution x resolution RGB
    seed: int = 0  # the data set is a pure function of this seed

    def check(self, bound: Bound) -> None:
        bound("num_classes", ge=2)
        bound("train_size", ge=1)
        bound("test_size", ge=1)
        bound("resolution", ge=4)
        bound("seed", ge=0, lt=2**32)


NORMALIZE_PRESETS = ("dataset", "imagenet", "none")


@config_section("data")
@dataclass
class DataConfig:
    name: str = "cifar10"  # cifar10 | cifar100 | mnist | fashionmnist | imagefolder | synthetic
    root: str = "./data"  # data set folder (imagefolder: holds train/ and val/ or test/)
    download: bool = True  # torchvision sets: download when missing
    batch_size: int = 128  # training batch size (per process under torchrun)
    eval_batch_size: int = 512
    num_workers: int = 2  # DataLoader path only
    val_split: float = 0.0  # fraction of train held out for validation; 0 -> validate on test
    augment: bool = True  # the data set's standard augmentation (crop + flip for CIFAR)
    image_size: int = 0  # 0 -> native (32 CIFAR/synthetic, 28 MNIST, 224 imagefolder)
    fast_path: bool = True  # small sets: uint8 tensors in memory, batched tensor augmentation
    cache_dir: str = "~/.cache/pruning-bootcamp"  # decoded imagefolder tensors are cached here
    train_subset: int = 0  # 0 = all; else a fixed seeded subset of N training images
    test_subset: int = 0  # 0 = all; else a fixed seeded subset of N test images
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    # one rule on both loader paths, printed in the run's first lines: dataset = the data set's
    # statistics (torchvision sets: their published ones; others: the training images', a seeded
    # sample of 512 on the DataLoader path over image files) | imagenet | none (mean 0, std 1)
    normalize: str = "dataset"
    mean: list[float] = field(default_factory=list)  # per channel, [0, 1] units; with std: replaces the preset
    std: list[float] = field(default_factory=list)  # per channel, > 0

    def check(self, bound: Bound) -> None:
        bound("std", gt=0)
        if self.normalize not in NORMALIZE_PRESETS:
            raise UserError(
                f"unknown data.normalize {self.normalize!r} in {bound.origin(bound.prefix + 'normalize')}; "
                f"choose one of: {', '.join(NORMALIZE_PRESETS)} (or give data.mean and data.std)"
            )
        if bool(self.mean) != bool(self.std) or len(self.mean) != len(self.std):
            raise UserError(
                f"data.mean {self.mean} and data.std {self.std} must be given together, one value per "
                f"channel each, e.g. data.mean=[0.5,0.5,0.5] data.std=[0.25,0.25,0.25]"
            )
        bound("batch_size", ge=1)
        bound("eval_batch_size", ge=1)
        bound("num_workers", ge=0)
        bound("val_split", ge=0, lt=1, why="a fraction of train")
        bound("image_size", ge=0, why="0 = native")
        bound("train_subset", ge=0, why="0 = all")
        bound("test_subset", ge=0, why="0 = all")

    @staticmethod
    def stored(data: dict) -> dict:
        """As a run folder stores it: a relative root made absolute (from the folder the run started
        in), so the stored config works from any folder later."""
        root = data.get("root")
        if not isinstance(root, str) or Path(root).expanduser().is_absolute():
            return data
        return data | {"root": str(Path(root).resolve())}

    @staticmethod
    def upgrade(data: dict) -> dict:
        """A stored section without normalize (written before it existed) that read image files per
        sample (DataLoader path) was normalized with ImageNet's statistics: keep that."""
        if "normalize" in data or data.get("name") not in ("imagefolder", "packed"):
            return data
        size_px = data.get("image_size") or 224
        if data.get("fast_path", True) and size_px <= 64:
            return data
        return data | {"normalize": "imagenet"}


def legacy_normalize(tree: dict) -> dict:
    """A whole stored config with its data section upgraded (DataConfig.upgrade); `tree` itself when unchanged."""
    data = tree.get("data") if isinstance(tree, dict) else None
    if not isinstance(data, dict) or DataConfig.upgrade(data) is data:
        return tree
    return tree | {"data": DataConfig.upgrade(data)}
