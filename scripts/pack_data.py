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

# run as a file (python scripts/pack_data.py): repo root on sys.path first
if __name__ == "__main__" and not __package__:
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from datasets.packed import pack_data
from tools.core.cli import Parser
from tools.core.errors import run_cli


def parse_args(argv):
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="image folder holding train/ and val/ or test/")
    parser.add_argument("out", help="the file to write, e.g. data/cifar10-jpeg.pack (replaced atomically)")
    return parser.parse_args(argv)


def main(argv=None):
    pack_data(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
