"""One normalization rule on both loader paths (data.normalize: dataset | imagenet | none, or
data.mean/data.std), printed in the run's first lines with the augmentation. Before, an image
folder read per sample (fast_path false, or above 64 px) was silently normalized with ImageNet's
statistics while the fast path used the folder's own."""

import pytest
import torch
from PIL import Image

from datasets import build_data
from datasets.config import DataConfig, SyntheticConfig, legacy_normalize
from datasets.imagefolder import IMAGENET_MEAN, IMAGENET_STD
from datasets.pixels import channel_stats
from datasets.synthetic import generate_synthetic
from tools.core.config import load_config
from tools.core.errors import UserError

RED = (200, 30, 30)  # far from ImageNet's statistics: a path that falls back to them shows at once


@pytest.fixture(scope="module")
def red_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("red")
    for split in ("train", "val"):
        for k, name in enumerate(("a", "b")):
            (root / split / name).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (16, 16), tuple(c + 10 * (i + k) for c in RED)).save(root / split / name / f"{i}.png")
    return root


def folder_cfg(root, **overrides) -> DataConfig:
    settings = dict(
        name="imagefolder",
        root=str(root),
        image_size=16,
        batch_size=4,
        eval_batch_size=4,
        num_workers=0,
        cache_dir=str(root / "cache"),
    )
    return DataConfig(**{**settings, **overrides})


def test_both_paths_use_the_folders_statistics(red_folder, capsys):
    fast = build_data(folder_cfg(red_folder))
    slow = build_data(folder_cfg(red_folder, fast_path=False))
    assert fast.mean == pytest.approx(slow.mean, abs=1e-3) and fast.std == pytest.approx(slow.std, abs=1e-3)
    assert fast.mean[0] == pytest.approx((RED[0] + 15) / 255, abs=0.01)  # the folder's red, not ImageNet's 0.485
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("normalize:")]
    assert len(lines) == 2 and lines[0] == lines[1]
    assert (
        lines[0].startswith("normalize: imagefolder dataset mean (0.8") and "augmentation: pad 2 px + flip" in lines[0]
    )
    x_fast, _ = next(iter(fast.test))
    x_slow, _ = next(iter(slow.test))
    assert torch.allclose(x_fast, x_slow, atol=0.05)  # the same normalized pixels either way


@pytest.mark.parametrize("fast_path", [True, False])
def test_presets_and_explicit_values_apply_on_either_path(red_folder, fast_path):
    imagenet = build_data(folder_cfg(red_folder, fast_path=fast_path, normalize="imagenet"))
    assert imagenet.mean == IMAGENET_MEAN and imagenet.std == IMAGENET_STD
    raw = build_data(folder_cfg(red_folder, fast_path=fast_path, normalize="none", augment=False))
    x, _ = next(iter(raw.test))
    assert raw.mean == (0.0,) * 3 and 0.0 <= x.min() and x.max() <= 1.0 and x[:, 0].mean() > 0.7  # plain [0, 1] red
    mine = build_data(folder_cfg(red_folder, fast_path=fast_path, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]))
    y, _ = next(iter(mine.test))
    assert mine.mean == (0.5,) * 3 and torch.allclose(y, (x - 0.5) / 0.25, atol=1e-5)


def test_default_keeps_the_fast_path_statistics(capsys):
    cfg = DataConfig(
        name="synthetic", num_workers=0, synthetic=SyntheticConfig(train_size=64, test_size=16, resolution=16)
    )
    data = build_data(cfg)
    images, _ = generate_synthetic(num_classes=10, num_images=64, resolution_px=16, seed=0, split="train")
    expected = channel_stats(images)  # what the fast path always used: the training images' statistics
    assert data.mean == pytest.approx(expected[0]) and data.std == pytest.approx(expected[1])
    assert "normalize: synthetic dataset mean (" in capsys.readouterr().out


def test_large_image_folders_name_their_imagenet_augmentation(red_folder, capsys):
    build_data(folder_cfg(red_folder, image_size=96))  # above 64 px: per-sample path even with fast_path
    out = capsys.readouterr().out
    assert "augmentation: RandomResizedCrop + flip (ImageNet recipe: image files above 64 px)" in out


@pytest.mark.parametrize(
    "sets, message",
    [
        (
            ["data.normalize=imagenett"],
            "unknown data.normalize 'imagenett' in --set; choose one of: dataset, imagenet, none",
        ),
        (["data.mean=[0.5,0.5,0.5]"], "data.mean [0.5, 0.5, 0.5] and data.std [] must be given together"),
        (["data.mean=[0.5]", "data.std=[0]"], "data.std[0] must be > 0, got 0.0 in --set"),
    ],
)
def test_bad_normalization_settings_are_one_line(sets, message):
    with pytest.raises(UserError) as err:
        load_config(None, overrides=sets)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_channel_count_mismatch_is_one_line():
    cfg = DataConfig(
        name="synthetic",
        num_workers=0,
        mean=[0.5],
        std=[0.2],
        synthetic=SyntheticConfig(train_size=8, test_size=8, resolution=8),
    )
    with pytest.raises(UserError, match=r"data.mean/std normalization has 1 channel\(s\) but synthetic images have 3"):
        build_data(cfg)


def test_old_stored_configs_keep_their_normalization():
    old_slow = {"data": {"name": "imagefolder", "image_size": 224}}
    assert legacy_normalize(old_slow)["data"]["normalize"] == "imagenet"  # read per sample: ImageNet's, as before
    assert load_config(None, base=(old_slow, "checkpoint old.pth")).data.normalize == "imagenet"
    assert "normalize" not in legacy_normalize({"data": {"name": "imagefolder", "image_size": 32}})["data"]
    assert "normalize" not in legacy_normalize({"data": {"name": "cifar10", "fast_path": False}})["data"]
    new = {"data": {"name": "imagefolder", "image_size": 224, "normalize": "dataset"}}
    assert legacy_normalize(new) is new
