"""Files written before the layered layout (issue 12) still load."""

import zipfile
from pathlib import Path

import torch

from tools.modeling.checkpoint import read_checkpoint

ASSETS = Path(__file__).parent / "assets"


def test_a_compressed_checkpoint_from_before_the_layout_loads():
    # Written by tools/sparse_storage.py (now tools/modeling/sparse_storage.py): its pickle names
    # tools.sparse_storage.unpack_tensor, which the alias module and the safe-globals list keep.
    path = ASSETS / "compressed_before_layout.pth"
    with zipfile.ZipFile(path) as z:
        pickle_bytes = b"".join(z.read(n) for n in z.namelist() if n.endswith("data.pkl"))
    assert b"tools.sparse_storage" in pickle_bytes
    torch.manual_seed(0)  # the recipe the file was written from
    expected = torch.randn(8, 16)
    expected[expected.abs() < 1.0] = 0
    for ckpt in (read_checkpoint(path), read_checkpoint(path, trust=True)):
        assert torch.equal(ckpt["model"]["fc.weight"], expected)
        assert torch.equal(ckpt["model"]["bn.num_batches_tracked"], torch.tensor(3))
