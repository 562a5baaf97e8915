"""scripts.loader_speed: images/s of the data loader alone and of a training step, printed and
optionally written to a YAML file.

    uv run python -m scripts.loader_speed --config cfgs/quickstart.yaml --batches 20
"""

from __future__ import annotations

import time

import torch

from datasets import benchmark_loader, build_data
from tools.core.cli import resolve_config
from tools.core.device import cpu_name, resolve_device, set_num_threads
from tools.core.io import atomic_write_yaml
from tools.modeling.registry import build_from_config
from tools.training.engine import cpu_has_native_bf16, train_step_throughput


def loader_speed(args) -> None:
    """scripts.loader_speed's whole command: `args` as its parse_args returns them."""
    cfg = resolve_config(args)
    start = time.perf_counter()
    set_num_threads(cfg.train.num_threads)
    device = resolve_device(cfg.train.device)
    data = build_data(cfg.data, seed=cfg.train.seed, device=device)
    data.train.set_epoch(0)
    loader_ips = benchmark_loader(data.train, num_batches=max(args.batches, 50))
    model = build_from_config(cfg.model, num_classes=data.num_classes, input_shape=data.input_shape)
    step_ips = train_step_throughput(model, data.train, device=device, num_batches=args.batches)
    # bf16 autocast timed whatever the CPU: train.amp=bf16 uses it only where bf16 is native (check_amp)
    bf16_ips = train_step_throughput(model, data.train, device=device, num_batches=args.batches, amp="bf16")
    cpu = (
        {
            "cpu": cpu_name(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": cpu_has_native_bf16(),
        }
        if device.type == "cpu"
        else {}
    )
    if args.save_results:
        atomic_write_yaml(
            args.save_results,
            {
                "data": cfg.data.name,
                "model": cfg.model.name,
                "batch_size": cfg.data.batch_size,
                "device": str(device),
                "num_threads": torch.get_num_threads(),
                "timed_batches": args.batches,
                "loader_images_per_s": loader_ips,
                "step_images_per_s": step_ips,
                "bf16_step_images_per_s": bf16_ips,
                "bf16_speedup": bf16_ips / step_ips,
                **cpu,
                "wall_time_s": time.perf_counter() - start,
            },
        )
    print(
        f"{cfg.data.name} batch {cfg.data.batch_size} on {device}: loader only {loader_ips:,.0f} images/s, "
        f"{cfg.model.name} training step {step_ips:,.0f} images/s, loader/step ratio {loader_ips / step_ips:,.1f}x"
    )
    native = "" if device.type != "cpu" else f"; native bf16 on this CPU: {'yes' if cpu['native_bf16'] else 'no'}"
    print(f"bf16 autocast training step {bf16_ips:,.0f} images/s ({bf16_ips / step_ips:.2f}x fp32){native}")
