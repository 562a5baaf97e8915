"""Pack an image folder (train/ plus val/ and/or test/, one sub-folder per class) into one file.

    uv run python -m scripts.pack_data ../shared/data/cifar10-jpeg data/cifar10-jpeg.pack
    uv run python -m scripts.train --config cfgs/cifar10jpeg_resnet20.yaml \\
        --set data.name=packed data.root=data/cifar10-jpeg.pack

The file holds every image file's bytes as they are (no re-encoding), the labels and the class
names, so it is about the folder's size (CIFAR-10 JPEG copy: about 56 MB) and `data.name: packed`
trains on exactly the tensors `data.name: imagefolder` gives. One file copies to another machine
(a GPU node without network) in seconds where 60,000 small files take minutes.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/pack_data.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

import time
from pathlib import Path

from datasets.packed import pack_imagefolder
from tools.core.cli import Parser
from tools.core.errors import UserError, run_cli


def main(argv=None):
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="image folder holding train/ and val/ or test/")
    parser.add_argument("out", help="the file to write, e.g. data/cifar10-jpeg.pack (replaced atomically)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"{out} is a folder; name the file to write, e.g. {out / 'data.pack'}")
    start = time.perf_counter()
    pack = pack_imagefolder(args.folder, out)
    for name, split in pack.splits.items():
        print(f"{name:5s} {len(split):>7,} images  {len(split.data) / 2**20:8.1f} MiB")
    print(f"{len(pack.classes)} classes; wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) in "
          f"{time.perf_counter() - start:.1f} s; use it with data.name=packed data.root={out}")


if __name__ == "__main__":
    run_cli(main)
