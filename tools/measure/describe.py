"""What `eval` measures on one model besides accuracy: cost, sparsity, size, latency per batch size,
and which test set an accuracy came from.

    uv run python -m scripts.eval --checkpoint results/train/quickstart/best_model.pth

    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    >>> report = describe_model(model, (3, 8, 8))    # the script adds evaluate()'s accuracy
    >>> report["macs"], report["flops"], report["params"], report["weight_sparsity"]
    (4178, 8356, 398, 0.0)

scripts.eval loads the model with tools.modeling.checkpoint_run.load_checkpoint_run first.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tools.measure.metrics import (
    count_macs_params,
    count_nonzero_macs_params,
    file_size_bytes,
    flops_from_macs,
    model_size_bytes,
    weight_sparsity,
)


def describe_model(
    model: nn.Module, input_shape: tuple[int, int, int], checkpoint_path: str | Path | None = None
) -> dict:
    """Dense and non-zero MACs/FLOPs/params, weight sparsity and sizes (bytes) of `model`."""
    macs, params = count_macs_params(model, (1, *input_shape))
    nz_macs, nz_params = count_nonzero_macs_params(model, (1, *input_shape))
    report = {
        "macs": macs,
        "flops": flops_from_macs(macs),
        "params": params,
        "nonzero_macs": nz_macs,
        "nonzero_flops": flops_from_macs(nz_macs),
        "nonzero_params": nz_params,
        "weight_sparsity": weight_sparsity(model),
        "size_bytes": model_size_bytes(model),  # serialized state dict
    }
    if checkpoint_path is not None:
        report["checkpoint_size_bytes"] = file_size_bytes(checkpoint_path)
    return report


def latency_by_batch_size(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    batch_sizes: list[int],
    device: torch.device,
    warmup: int,
    repeats: int,
    num_threads: int | None,
) -> dict[int, dict]:
    """{batch size: tools.measure.latency.measure_latency's record} for each of `batch_sizes`."""
    from tools.measure.latency import measure_latency

    return {
        bs: measure_latency(
            model,
            input_shape,
            batch_size=bs,
            device=device,
            warmup=warmup,
            repeats=repeats,
            num_threads=num_threads or None,
        )
        for bs in batch_sizes
    }


SELECTIONS = ("val", "last", "test")


def checkpoint_selection(val_split: float, epochs: int) -> str:
    """What chose the checkpoint a metrics file reports (`checkpoint_selected_on`): `val`, the
    best epoch on a split held out of the training images (data.val_split > 0); `test`, the best
    epoch on the test set itself (val_split 0: data.val *is* the test set, so the figure is
    optimistic and scripts.benchmark judges no target on it); `last`, no epoch was chosen (no
    training or fine-tuning epochs).

    >>> checkpoint_selection(0.1, 15), checkpoint_selection(0.0, 15), checkpoint_selection(0.0, 0)
    ('val', 'test', 'last')
    """
    if epochs <= 0:
        return "last"
    return "val" if val_split > 0 else "test"


def test_set_record(data_cfg, seed: int, num_images: int) -> dict:
    """Which test images an accuracy was measured on (data set, image count, seeded subset).
    Metrics files carry it as `test_set`, so scripts.eval --baseline-metrics compares two
    accuracies only when they come from the same test set."""
    record = {
        "data": data_cfg.name,
        "test_images": int(num_images),
        "test_subset": int(data_cfg.test_subset),
        "subset_seed": int(seed) if data_cfg.test_subset else None,
    }
    if data_cfg.name == "synthetic":  # the synthetic test images are a function of these
        record["synthetic"] = {
            "seed": data_cfg.synthetic.seed,
            "test_size": data_cfg.synthetic.test_size,
            "resolution": data_cfg.synthetic.resolution,
        }
    return record
