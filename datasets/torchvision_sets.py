"""CIFAR-10/100, MNIST and FashionMNIST through torchvision, with one-line errors when missing.

    from datasets.torchvision_sets import TORCHVISION_SETS, open_split, to_uint8_tensors
    ds = open_split("cifar10", root="./data", train=True, download=True)   # or UserError
    images_u8, labels = to_uint8_tensors(ds)                               # N x 3 x 32 x 32

When the files are missing and cannot be downloaded (download disabled, no network, a
read-only folder) the error names the data set, the absolute folder looked in and the fix.
The download runs under a short socket timeout so an unreachable mirror fails in seconds.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import torch
from torchvision import datasets as tv_datasets

from datasets.augment import AugmentSpec
from tools.core.errors import UserError

DOWNLOAD_SOCKET_TIMEOUT_S = 10.0
_FIX = (
    "set data.root to a folder that holds an existing copy (e.g. --set data.root=/path) "
    "or run once with internet access"
)


@dataclass(frozen=True)
class TorchvisionSet:
    title: str
    factory: type
    subfolder: str  # where torchvision keeps the files under root
    mean: tuple[float, ...]
    std: tuple[float, ...]
    native_px: int
    augment: AugmentSpec


TORCHVISION_SETS = {
    "cifar10": TorchvisionSet(
        "CIFAR-10",
        tv_datasets.CIFAR10,
        "cifar-10-batches-py",
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        32,
        AugmentSpec(pad_px=4, flip=True),
    ),
    "cifar100": TorchvisionSet(
        "CIFAR-100",
        tv_datasets.CIFAR100,
        "cifar-100-python",
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        32,
        AugmentSpec(pad_px=4, flip=True),
    ),
    # Digits are not mirror-symmetric: no flip. Clothes are, so FashionMNIST flips.
    "mnist": TorchvisionSet(
        "MNIST",
        tv_datasets.MNIST,
        "MNIST/raw",
        (0.1307,),
        (0.3081,),
        28,
        AugmentSpec(pad_px=2, flip=False),
    ),
    "fashionmnist": TorchvisionSet(
        "FashionMNIST",
        tv_datasets.FashionMNIST,
        "FashionMNIST/raw",
        (0.2860,),
        (0.3530,),
        28,
        AugmentSpec(pad_px=2, flip=True),
    ),
}


def open_split(name: str, *, root: str, train: bool, download: bool) -> torch.utils.data.Dataset:
    """The torchvision data set (no transform: items are PIL images), downloading it first
    when missing and `download` is set; UserError when it cannot be had."""
    spec = TORCHVISION_SETS[name]
    root_abs = Path(root).expanduser().resolve()
    where = root_abs / spec.subfolder
    try:
        return spec.factory(str(root_abs), train=train, download=False)
    except (RuntimeError, OSError):
        if not download:
            message = f"{spec.title} not found in {where} and data.download is false: {_FIX} and data.download=true"
            raise UserError(message) from None
    try:
        with _socket_timeout(DOWNLOAD_SOCKET_TIMEOUT_S):
            return spec.factory(str(root_abs), train=train, download=True)
    except (URLError, RuntimeError, OSError, ValueError) as err:
        raise UserError(
            f"{spec.title} not found in {where} and the download failed ({_one_line(err)}): {_FIX}"
        ) from None


def to_uint8_tensors(dataset: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All images as one N x C x H x W uint8 tensor plus int64 labels (no decoding needed:
    torchvision keeps these sets as arrays)."""
    data = dataset.data
    if isinstance(data, torch.Tensor):  # MNIST family: N x H x W tensor
        images = data.unsqueeze(1).contiguous()
    else:  # CIFAR family: N x H x W x C numpy array
        images = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
    return images, torch.as_tensor(dataset.targets, dtype=torch.int64)


def _one_line(err: Exception) -> str:
    """The most specific line of a possibly multi-line error (torchvision's mirror loop lists
    every mirror, then the underlying urlopen error last)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"[:200]


@contextmanager
def _socket_timeout(timeout_s: float) -> Iterator[None]:
    """torchvision's urlopen calls pass no timeout, so a black-holed connection would hang;
    the default socket timeout bounds each connect/read instead (a slow but live download
    still completes)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
