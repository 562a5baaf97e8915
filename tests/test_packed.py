"""The packed data set (scripts.pack_data, data.name: packed) gives exactly the folder's tensors.

uv run pytest tests/test_packed.py
"""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT
from PIL import Image

import datasets.imagefolder as imagefolder_module
import scripts.pack_data as pack_script
from datasets import build_data
from datasets.config import DataConfig
from datasets.packed import read_pack
from tools.core.errors import UserError, run_cli


def make_image_tree(root, splits=("train", "test"), per_class=4):
    """3 classes of 24x20 images, JPEG and PNG mixed, noisy so that JPEG decoding matters."""
    gen = torch.Generator().manual_seed(0)
    for split in splits:
        for c, name in enumerate(("cat", "dog", "fox")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = torch.randint(0, 256, (20, 24, 3), generator=gen, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.{'png' if (i + c) % 2 else 'jpg'}")
    return root


def collect(loader):
    batches = list(loader)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


@pytest.mark.parametrize("fast_path", [True, False])
def test_packed_round_trip_gives_the_folder_tensors(tmp_path, fast_path):
    root = make_image_tree(tmp_path / "imgs")
    pack_file = tmp_path / "out" / "imgs.pack"
    pack_script.main([str(root), str(pack_file)])
    assert not list(pack_file.parent.glob("*.tmp"))  # written atomically: no temp file left
    common = dict(image_size=16, batch_size=5, num_workers=0, cache_dir=str(tmp_path / "cache"), fast_path=fast_path)
    folder = build_data(DataConfig(name="imagefolder", root=str(root), **common), seed=3)
    packed = build_data(DataConfig(name="packed", root=str(pack_file), **common), seed=3)
    assert packed.classes == folder.classes == ["cat", "dog", "fox"]
    assert (packed.mean, packed.std, packed.input_shape) == (folder.mean, folder.std, folder.input_shape)
    for split in ("train", "test"):
        getattr(folder, split).set_epoch(1)
        getattr(packed, split).set_epoch(1)
        images, labels = collect(getattr(packed, split))
        want_images, want_labels = collect(getattr(folder, split))
        assert torch.equal(images, want_images) and torch.equal(labels, want_labels)
    pack = read_pack(str(pack_file))  # the stored bytes are the files' bytes, not re-encoded
    first = sorted((root / "train" / "cat").iterdir())[0]
    assert pack.splits["train"].encoded(0) == first.read_bytes()


def test_packed_fast_path_decodes_once_then_uses_cache(tmp_path, monkeypatch):
    root = make_image_tree(tmp_path / "imgs", splits=("train", "val"), per_class=2)
    pack_file = tmp_path / "imgs.pack"
    pack_script.main([str(root), str(pack_file)])
    cfg = DataConfig(name="packed", root=str(pack_file), image_size=16, num_workers=0, cache_dir=str(tmp_path / "c"))
    first = collect(build_data(cfg).test)  # val/ only: it is the test split too, as for the folder

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(imagefolder_module, "decode_files", no_decoding)
    again = collect(build_data(cfg).test)
    assert torch.equal(first[0], again[0]) and first[1].tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"not a torch file", "is not a readable packed data set"),
        ("torch", "is not a packed data set"),
        ("folder", "is a folder"),
        (None, "not found"),
    ],
)
def test_bad_pack_is_one_line_and_exit_2(tmp_path, content, expected):
    bad = tmp_path / "bad.pack"
    if content == "torch":
        torch.save({"weights": torch.zeros(2)}, bad)
    elif content == "folder":
        bad.mkdir()
    elif content is not None:
        bad.write_bytes(content)
    with pytest.raises(UserError, match=expected) as err:
        build_data(DataConfig(name="packed", root=str(bad), image_size=16))
    assert "\n" not in str(err.value) and "scripts.pack_data" in str(err.value)


def test_bad_pack_stops_a_script_with_one_line_and_exit_2(tmp_path, capsys):
    import scripts.train as train_script

    bad = tmp_path / "bad.pack"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(SystemExit) as stop:
        run_cli(
            train_script.main,
            [
                "--config",
                str(ROOT / "cfgs" / "quickstart.yaml"),
                "--set",
                "data.name=packed",
                f"data.root={bad}",
                "train.device=cpu",
                "--save-dir",
                str(tmp_path / "run"),
            ],
        )
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "is not a readable packed data set" in err


def test_pack_data_rejects_a_folder_without_splits(tmp_path):
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    with pytest.raises(UserError, match="needs train/"):
        pack_script.main([str(tmp_path / "imgs"), str(tmp_path / "x.pack")])
    assert not (tmp_path / "x.pack").exists()


def test_imagefolder_pointed_at_a_pack_says_to_use_packed(tmp_path):
    pack_file = tmp_path / "imgs.pack"
    pack_script.main([str(make_image_tree(tmp_path / "imgs", per_class=1)), str(pack_file)])
    with pytest.raises(UserError, match="is a file; .*data.name: packed"):
        build_data(DataConfig(name="imagefolder", root=str(pack_file), image_size=16))
