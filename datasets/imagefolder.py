"""Image folders (`root/train/<class>/*.jpg`, `root/val/...` or `root/test/...`).

    from datasets.imagefolder import list_splits, load_decoded
    classes, files = list_splits("/data/cifar10-jpeg")        # files["train"], files["test"]: [(path, label)]
    train_files = files["train"]
    decoded = load_decoded(train_files, root=..., split="train", size_px=32,
                           cache_dir="~/.cache/pruning-bootcamp", num_workers=2)

Small images (the fast path) are decoded once into a uint8 tensor and cached as a .pt file
keyed by the folder's absolute path, the split, the size and a fingerprint of the file list
(paths, labels, byte sizes, mtimes), so any change to the folder triggers a fresh decode and
a second run loads in seconds. Large images stay on disk and go through `ImageFiles`.
datasets/packed.py keeps the same files in one file and decodes them with the same code.
"""

from __future__ import annotations

import functools
import hashlib
import io
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from datasets.pixels import channel_stats
from tools.core.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CACHE_FORMAT = 1  # bump when the cached layout or the decode recipe changes
_EVAL_SPLIT_NAMES = ("val", "test")
_DECODE_CHUNK_FILES = 1024  # per pool task: large enough to amortize pickling, small enough to balance


@dataclass
class DecodedSplit:
    images_u8: torch.Tensor  # N x 3 x size x size
    labels: torch.Tensor  # N int64
    mean: tuple[float, ...]  # per channel, [0, 1] units
    std: tuple[float, ...]


def find_splits(root: str) -> dict[str, Path]:
    """`train` plus whichever of `val`, `test` exist under root; UserError when train or
    both eval folders are missing."""
    root_abs = Path(root).expanduser().resolve()
    if root_abs.is_file():
        raise UserError(
            f"imagefolder root {root_abs} is a file; for a file written by scripts.pack_data set data.name: packed"
        )
    if not root_abs.is_dir():
        raise UserError(
            f"imagefolder root {root_abs} does not exist: set data.root to a folder holding train/ and val/ (or test/)"
        )
    splits = {name: root_abs / name for name in ("train", *_EVAL_SPLIT_NAMES) if (root_abs / name).is_dir()}
    if "train" not in splits or len(splits) < 2:
        found = ", ".join(sorted(p.name + "/" for p in root_abs.iterdir() if p.is_dir())) or "no folders"
        raise UserError(
            f"imagefolder root {root_abs} needs train/ and val/ (or test/), one sub-folder per class; found {found}"
        )
    return splits


def list_split(split_dir: Path, *, classes: list[str] | None) -> tuple[list[str], list[tuple[str, int]]]:
    """(class names, [(path, label)]) for a split. Pass the train split's `classes` for eval
    splits so labels agree; eval splits may lack a class but may not add one."""
    own_classes, _ = find_classes(str(split_dir)) if any(p.is_dir() for p in split_dir.iterdir()) else ([], {})
    if classes is None:
        classes = own_classes
    extra = sorted(set(own_classes) - set(classes))
    if extra:
        raise UserError(f"{split_dir} has class folders that train/ lacks: {', '.join(extra[:5])}; make them match")
    try:
        class_to_idx = {c: i for i, c in enumerate(classes)}
        allow_empty = split_dir.name != "train"
        files = make_dataset(str(split_dir), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=allow_empty)
    except FileNotFoundError as err:
        reason = " ".join(str(err).split())[:200]
        raise UserError(f"{split_dir}: {reason}; every class folder needs at least one image") from None
    if not files:
        raise UserError(f"{split_dir} holds no images ({', '.join(IMG_EXTENSIONS)}) in class sub-folders")
    return classes, files


def list_splits(root: str) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """(class names, {split: [(path, label)]}) for "train" plus "val" and/or "test" as on disk."""
    split_dirs = find_splits(root)
    classes, train_files = list_split(split_dirs["train"], classes=None)
    files = {"train": train_files}
    for split in _EVAL_SPLIT_NAMES:
        if split in split_dirs:
            files[split] = list_split(split_dirs[split], classes=classes)[1]
    return classes, files


class ImageFiles(Dataset):
    """(PIL RGB image, label) per file, for the DataLoader path."""

    def __init__(self, files: list[tuple[str, int]]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path, label = self.files[index]
        return open_rgb(path), label


def load_decoded(
    files: list[tuple[str, int]], *, root: str, split: str, size_px: int, cache_dir: str, num_workers: int
) -> DecodedSplit:
    """The split as uint8 tensors plus its channel statistics, from the cache when the folder
    is unchanged, else decoded (with `num_workers` processes) and cached."""
    return decode_cached(
        [path for path, _ in files],
        torch.tensor([label for _, label in files], dtype=torch.int64),
        cache_path=cache_file(files, root=root, split=split, size_px=size_px, cache_dir=cache_dir),
        size_px=size_px,
        num_workers=num_workers,
        what=f"{root}/{split}",
    )


def decode_cached(
    sources: list[str | bytes], labels: torch.Tensor, *, cache_path: Path, size_px: int, num_workers: int, what: str
) -> DecodedSplit:
    """Images (paths or encoded bytes) decoded to uint8 tensors with their channel statistics,
    read from `cache_path` when it is there, else decoded and written to it."""
    cached = _read_cache(cache_path)
    if cached is not None:
        return cached
    started = time.perf_counter()
    _note(f"decoding {len(sources)} images of {what} to {size_px}px once (cache: {cache_path})")
    images_u8 = decode_files(sources, size_px=size_px, num_workers=num_workers)
    mean, std = channel_stats(images_u8)
    decoded = DecodedSplit(images_u8, labels, mean, std)
    _write_cache(cache_path, decoded)
    _note(f"decoded {len(sources)} images in {time.perf_counter() - started:.1f} s")
    return decoded


def cache_file(files: list[tuple[str, int]], *, root: str, split: str, size_px: int, cache_dir: str) -> Path:
    """Cache path whose name changes with any added, removed, relabelled or rewritten file."""
    fingerprint = hashlib.sha256(f"{CACHE_FORMAT}|{Path(root).expanduser().resolve()}|{split}|{size_px}".encode())
    for path, label in files:
        stat = os.stat(path)
        fingerprint.update(f"|{path}|{label}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return Path(cache_dir).expanduser() / f"imagefolder-{split}-{size_px}px-{fingerprint.hexdigest()[:20]}.pt"


def decode_files(sources: list[str | bytes], *, size_px: int, num_workers: int) -> torch.Tensor:
    """N x 3 x size_px x size_px uint8 from image paths or encoded bytes: shorter side resized
    to size_px, then centre crop. Chunks go to a process pool; workers use only PIL and numpy."""
    chunks = [sources[i : i + _DECODE_CHUNK_FILES] for i in range(0, len(sources), _DECODE_CHUNK_FILES)]
    decode = functools.partial(_decode_chunk, size_px=size_px)
    if num_workers > 0 and len(chunks) > 1:
        with _process_context().Pool(min(num_workers, len(chunks)), initializer=_default_sigterm) as pool:
            arrays = pool.map(decode, chunks)
    else:
        arrays = [decode(chunk) for chunk in chunks]
    if not arrays:
        return torch.zeros(0, 3, size_px, size_px, dtype=torch.uint8)
    return torch.from_numpy(np.concatenate(arrays))


def _process_context() -> multiprocessing.context.BaseContext:
    """fork on Linux, as DataLoader workers do: no re-import of torch or of the caller's
    script per worker (children only run PIL and numpy, so forking a threaded parent is safe)."""
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)


def _default_sigterm() -> None:
    # Forked workers inherit the CLI's SIGTERM handler; Pool.terminate() (on leaving the `with`)
    # sends SIGTERM, which would then print a Terminated traceback per worker.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _decode_chunk(sources: list[str | bytes], *, size_px: int) -> np.ndarray:
    out = np.empty((len(sources), 3, size_px, size_px), dtype=np.uint8)
    for i, source in enumerate(sources):
        out[i] = np.asarray(_square_resize(open_rgb(source), size_px)).transpose(2, 0, 1)
    return out


def _square_resize(image: Image.Image, size_px: int) -> Image.Image:
    width, height = image.size
    if (width, height) == (size_px, size_px):
        return image
    scale = size_px / min(width, height)
    new_size = (max(size_px, round(width * scale)), max(size_px, round(height * scale)))
    resized = image.resize(new_size, Image.Resampling.BILINEAR)
    left = (resized.width - size_px) // 2
    top = (resized.height - size_px) // 2
    return resized.crop((left, top, left + size_px, top + size_px))


def open_rgb(source: str | bytes) -> Image.Image:
    """An image file (path) or its encoded bytes (a packed data set), as RGB."""
    try:
        if isinstance(source, bytes):
            return Image.open(io.BytesIO(source)).convert("RGB")
        with open(source, "rb") as f:
            return Image.open(f).convert("RGB")
    except OSError as err:  # includes PIL.UnidentifiedImageError
        if isinstance(source, bytes):
            raise UserError(
                f"a packed image does not decode ({err.__class__.__name__}); pack the folder again "
                f"with scripts.pack_data"
            ) from None
        raise UserError(f"cannot read image {source} ({err.__class__.__name__}); remove or replace the file") from None


def _note(message: str) -> None:
    # stderr, not logging: a first decode can take a minute and must not look like a hang
    # in scripts that never configure logging.
    print(f"[datasets] {message}", file=sys.stderr, flush=True)


def _read_cache(path: Path) -> DecodedSplit | None:
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, weights_only=True)
        return DecodedSplit(payload["images_u8"], payload["labels"], tuple(payload["mean"]), tuple(payload["std"]))
    except Exception as err:  # a truncated or foreign file is only a cache miss
        _note(f"ignoring unreadable cache {path} ({type(err).__name__}); decoding again")
        return None


def _write_cache(path: Path, decoded: DecodedSplit) -> None:
    """Write-then-rename so a concurrent reader (another rank, another run) never sees half a file."""
    partial = path.with_suffix(f".{os.getpid()}.partial")
    payload = {
        "images_u8": decoded.images_u8,
        "labels": decoded.labels,
        "mean": list(decoded.mean),
        "std": list(decoded.std),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, partial)
        os.replace(partial, path)
    except OSError as err:  # an unwritable cache costs a re-decode next time, not this run
        _note(f"could not write cache {path} ({err}); set data.cache_dir to a writable folder")
