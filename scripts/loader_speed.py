"""Is the data loader or the model the bottleneck? Loader-only images/s vs training-step images/s.

    uv run python -m scripts.loader_speed --config cfgs/cifar10jpeg_resnet20.yaml --batches 20

Uses the training loader of the config (with its augmentation) and the config's model; prints
both rates and their ratio (and writes them to --save-results, a YAML file, when given). A ratio
well above 1 means the loader keeps the model fed.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/loader_speed.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

import time

import torch

from datasets import benchmark_loader, build_data
from tools.core.cli import base_parser, resolve_config
from tools.core.device import resolve_device, set_num_threads
from tools.core.errors import UserError, run_cli
from tools.core.io import atomic_write_yaml
from tools.modeling.registry import build_from_config
from tools.training.engine import train_step_throughput


def main(argv=None):
    parser = base_parser(__doc__, config_required=True)
    parser.add_argument("--batches", type=int, default=20, help="timed batches for each measurement")
    parser.add_argument("--save-results", help="YAML file for the two rates")
    args = parser.parse_args(argv)
    if args.batches < 1:
        raise UserError(f"--batches must be >= 1, got {args.batches}")
    cfg = resolve_config(args)
    start = time.perf_counter()
    set_num_threads(cfg.train.num_threads)
    device = resolve_device(cfg.train.device)
    data = build_data(cfg.data, seed=cfg.train.seed, device=device)
    data.train.set_epoch(0)
    loader_ips = benchmark_loader(data.train, num_batches=max(args.batches, 50))
    model = build_from_config(cfg.model, num_classes=data.num_classes, input_shape=data.input_shape)
    step_ips = train_step_throughput(model, data.train, device=device, num_batches=args.batches)
    if args.save_results:
        atomic_write_yaml(args.save_results, {
            "data": cfg.data.name, "model": cfg.model.name, "batch_size": cfg.data.batch_size, "device": str(device),
            "num_threads": torch.get_num_threads(), "timed_batches": args.batches,
            "loader_images_per_s": loader_ips, "step_images_per_s": step_ips,
            "wall_time_s": time.perf_counter() - start})
    print(f"{cfg.data.name} batch {cfg.data.batch_size} on {device}: loader only {loader_ips:,.0f} images/s, "
          f"{cfg.model.name} training step {step_ips:,.0f} images/s, loader/step ratio {loader_ips / step_ips:,.1f}x")


if __name__ == "__main__":
    run_cli(main)
