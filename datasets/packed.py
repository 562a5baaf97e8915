"""An image folder packed into one file: every split's encoded image bytes, labels and class names.

    python -m scripts.pack_data ../shared/data/cifar10-jpeg data/cifar10-jpeg.pack
    python -m scripts.train --config cfgs/bench/resnet18_gpu_baseline.yaml   # data.name: packed

    pack = pack_imagefolder("../shared/data/cifar10-jpeg", Path("data/cifar10-jpeg.pack"))
    pack = read_pack("data/cifar10-jpeg.pack")
    pack.classes, len(pack.splits["train"]), pack.splits["train"].encoded(0)   # the file's bytes

One file instead of 60,000 travels to a GPU machine in seconds. The files are stored as they are
(no re-encoding), in the order the folder form lists them, so `data.name: packed` decodes exactly
the tensors `data.name: imagefolder` decodes from the folder, into the same kind of tensor cache
(keyed by a digest of the split's bytes, so an unchanged pack is decoded once per machine).
The file is a `torch.save` archive of tensors, strings and lists only (read with
`weights_only=True`: loading it runs no pickled code).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from datasets import imagefolder
from tools.core.errors import UserError
from tools.core.io import atomic_torch_save

FORMAT = "pruning-bootcamp packed image folder"
VERSION = 1


@dataclass
class PackedSplit:
    data: torch.Tensor  # uint8: every encoded image file, back to back
    offsets: torch.Tensor  # int64, N + 1: image i is data[offsets[i]:offsets[i + 1]]
    labels: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return len(self.labels)

    def encoded(self, index: int) -> bytes:
        return self.data[self.offsets[index] : self.offsets[index + 1]].numpy().tobytes()

    def digest(self) -> str:
        """sha256 of bytes, offsets and labels: names the decoded cache of this split."""
        h = hashlib.sha256()
        for tensor in (self.data, self.offsets, self.labels):
            h.update(tensor.contiguous().numpy().data)
        return h.hexdigest()


@dataclass
class Pack:
    classes: list[str]
    splits: dict[str, PackedSplit]  # "train" plus "val" and/or "test", as the folder had them


def pack_imagefolder(root: str, out: Path) -> Pack:
    """Pack `root` (train/ plus val/ and/or test/, one sub-folder per class) into `out`, atomically."""
    classes, files = imagefolder.list_splits(root)
    pack = Pack(classes, {split: _pack_files(split_files) for split, split_files in files.items()})
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "classes": classes,
        "splits": {name: {"data": s.data, "offsets": s.offsets, "labels": s.labels} for name, s in pack.splits.items()},
    }
    atomic_torch_save(payload, out)
    return pack


def _pack_files(files: list[tuple[str, int]]) -> PackedSplit:
    blobs = [Path(path).read_bytes() for path, _ in files]
    sizes = torch.tensor([0] + [len(b) for b in blobs], dtype=torch.int64)
    data = (
        torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8) if blobs else torch.zeros(0, dtype=torch.uint8)
    )
    return PackedSplit(data, sizes.cumsum(0), torch.tensor([label for _, label in files], dtype=torch.int64))


def read_pack(path: str) -> Pack:
    """The pack at `path`; one-line UserError when it is missing, a folder or not a pack."""
    file = Path(path).expanduser()
    remake = f"make it with: python -m scripts.pack_data IMAGE_FOLDER {path}"
    if file.is_dir():
        raise UserError(
            f"data.root {path} is a folder; data.name: packed reads a file written by scripts.pack_data "
            f"(python -m scripts.pack_data {path} {path}.pack), or use data.name: imagefolder for the folder"
        )
    if not file.is_file():
        raise UserError(f"packed data set {path} not found; {remake}")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, foreign or corrupt: torch raises many types
        raise UserError(f"{path} is not a readable packed data set ({type(err).__name__}); {remake}") from None
    return _checked(payload, path, remake)


def _checked(payload, path: str, remake: str) -> Pack:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a packed data set (no '{FORMAT}' header); {remake}")
    if payload.get("version") != VERSION:
        raise UserError(
            f"{path} is packed in format version {payload.get('version')}, this code reads {VERSION}; {remake}"
        )
    splits = {}
    for name, s in payload["splits"].items():
        split = PackedSplit(s["data"], s["offsets"], s["labels"])
        if len(split.offsets) != len(split) + 1 or int(split.offsets[-1]) != len(split.data):
            raise UserError(f"{path}: split {name} is inconsistent (offsets do not match the bytes); {remake}")
        splits[name] = split
    if "train" not in splits or len(splits) < 2:
        raise UserError(f"{path} holds splits {', '.join(splits) or 'none'}; it needs train and val or test; {remake}")
    return Pack(list(payload["classes"]), splits)


def load_decoded(
    split: PackedSplit, *, path: str, name: str, size_px: int, cache_dir: str, num_workers: int
) -> imagefolder.DecodedSplit:
    """The split decoded to uint8 tensors exactly as the folder form would be, cached."""
    key = hashlib.sha256(f"{imagefolder.CACHE_FORMAT}|packed|{split.digest()}|{size_px}".encode()).hexdigest()[:20]
    cache_path = Path(cache_dir).expanduser() / f"packed-{name}-{size_px}px-{key}.pt"
    sources = [split.encoded(i) for i in range(len(split))]
    return imagefolder.decode_cached(
        sources, split.labels, cache_path=cache_path, size_px=size_px, num_workers=num_workers, what=f"{path}:{name}"
    )


class PackedImages(Dataset):
    """(PIL RGB image, label) per packed file, for the DataLoader path (large images)."""

    def __init__(self, split: PackedSplit):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return imagefolder.open_rgb(self.split.encoded(index)), int(self.split.labels[index])


def pack_data(args) -> None:
    """scripts.pack_data's whole command: `args` as its parse_args returns them."""
    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"{out} is a folder; name the file to write, e.g. {out / 'data.pack'}")
    start = time.perf_counter()
    pack = pack_imagefolder(args.folder, out)
    for name, split in pack.splits.items():
        print(f"{name:5s} {len(split):>7,} images  {len(split.data) / 2**20:8.1f} MiB")
    print(
        f"{len(pack.classes)} classes; wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) in "
        f"{time.perf_counter() - start:.1f} s; use it with data.name=packed data.root={out}"
    )
