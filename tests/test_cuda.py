"""The CUDA paths, on a GPU: `python -m pytest -m cuda` (under 2 minutes on one H100/H200).

    python -m pytest -m cuda -v                 # on a GPU machine
    uv run pytest -m cuda --collect-only -q     # anywhere: the list; without CUDA every one is skipped

Each test's name says the CUDA path it covers: the GPU-resident loader, AMP (bf16; fp16 with
GradScaler, its checkpoint and resume), channels_last, CUDA-event latency, 2:4 semi-structured
conversion and its timing, DistributedDataParallel with one NCCL process, and the scripts end to
end on CUDA (train -> structured pruning with distillation -> export -> profile).
Tiny synthetic data and models: these check that the paths run and agree, not how fast they are
(speed is the GPU benchmark rows' job).
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
import yaml
from torch import nn

from datasets import build_data
from datasets.config import DataConfig, SyntheticConfig
from tools.modeling.registry import build_model
from tools.training.engine import StepOptions, evaluate, train_one_epoch

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
CUDA = torch.device("cuda")
DATA = DataConfig(
    name="synthetic",
    batch_size=64,
    eval_batch_size=128,
    num_workers=0,
    synthetic=SyntheticConfig(num_classes=4, train_size=256, test_size=128, resolution=16),
)
TINY = [
    "data.synthetic.train_size=256",
    "data.synthetic.test_size=128",
    "data.synthetic.resolution=16",
    "data.synthetic.num_classes=4",
    "model.name=resnet20",
    "data.num_workers=0",
]


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet20", num_classes=4, image_size=16).to(CUDA)


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def conv_output_dtypes(model: nn.Module) -> set[torch.dtype]:
    """Records the dtype of every conv output during the next forward passes."""
    seen: set[torch.dtype] = set()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(lambda mod, inp, out: seen.add(out.dtype))
    return seen


def test_gpu_resident_loader_batches_stay_on_cuda_and_match_cpu():
    gpu, cpu = build_data(DATA, seed=1, device=CUDA), build_data(DATA, seed=1)
    assert gpu.train.images_u8.device.type == "cuda"  # the whole split lives on the GPU
    gpu.train.set_epoch(2)
    cpu.train.set_epoch(2)
    for (xg, yg), (xc, yc) in zip(gpu.train, cpu.train):  # same crops and flips, done on the GPU
        assert xg.device.type == "cuda" and yg.device.type == "cuda"
        assert torch.equal(yg.cpu(), yc) and torch.allclose(xg.cpu(), xc, atol=1e-5)


def test_amp_bf16_train_step_on_cuda():
    model, data = tiny_model(), build_data(DATA, seed=0, device=CUDA)
    before = model.fc.weight.detach().clone()
    dtypes = conv_output_dtypes(model)
    stats = train_one_epoch(model, data.train, sgd(model), device=CUDA, step=StepOptions(amp="bf16"))
    assert dtypes == {torch.bfloat16} and model.fc.weight.dtype == torch.float32  # autocast, fp32 master weights
    assert torch.isfinite(torch.tensor(stats["loss"])) and not torch.equal(before, model.fc.weight)


def test_amp_fp16_with_grad_scaler_fit_checkpoint_and_resume_on_cuda(tmp_path):
    from tools.core.run_folder import LAST
    from tools.training.config import TrainConfig
    from tools.training.fit import fit

    data = build_data(DATA, seed=0, device=CUDA)
    cfg = TrainConfig(epochs=1, lr=0.05, amp="fp16", scheduler="cosine", device="cuda")
    model = tiny_model()
    dtypes = conv_output_dtypes(model)
    fit(model, data, train_cfg=cfg, run_dir=tmp_path, config={}, device=CUDA)
    assert dtypes == {torch.float16}
    last = torch.load(tmp_path / LAST, map_location="cpu", weights_only=False)
    assert last["scaler"] and last["scaler"]["scale"] > 0  # GradScaler state saved for resume
    summary = fit(
        tiny_model(),
        data,
        train_cfg=dataclasses.replace(cfg, epochs=2),
        run_dir=tmp_path,
        config={},
        device=CUDA,
        resume=last,
    )
    assert summary["epochs_run"] == 2 and len(summary["history"]) == 2


def test_channels_last_train_and_eval_on_cuda():
    model, data = tiny_model(), build_data(DATA, seed=0, device=CUDA)
    seen = []
    model.conv1.register_forward_hook(
        lambda m, i, o: seen.append(i[0].is_contiguous(memory_format=torch.channels_last))
    )
    train_one_epoch(model, data.train, sgd(model), device=CUDA, step=StepOptions(amp="bf16", channels_last=True))
    assert seen and all(seen)
    nhwc = evaluate(model, data.test, device=CUDA, channels_last=True)
    nchw = evaluate(model, data.test, device=CUDA, channels_last=False)
    assert abs(nhwc["loss"] - nchw["loss"]) < 1e-3 and abs(nhwc["top1"] - nchw["top1"]) <= 1.0


def test_cuda_event_latency_whole_model_and_per_layer():
    from tools.measure.latency import measure_latency, per_layer_latency

    model = tiny_model()
    stats = measure_latency(model, (3, 16, 16), batch_size=32, device="cuda", warmup=3, repeats=10)
    assert stats["device"] == "cuda" and 0 < stats["median_ms"] <= stats["p99_ms"] and stats["throughput_ips"] > 0
    rows = per_layer_latency(model, (3, 16, 16), batch_size=32, device="cuda", repeats=3)
    assert rows and all(r["time_ms"] >= 0 for r in rows)


@pytest.mark.skipif(
    torch.cuda.is_available() and torch.cuda.get_device_capability() < (8, 0),
    reason="2:4 sparse tensor cores need compute capability >= 8.0",
)
def test_semi_structured_2to4_conversion_and_speed_measurement_on_cuda():
    from tools.pruning import unstructured as un
    from tools.pruning.semi_structured import semi_structured_report

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)).to(CUDA)
    un.prune_step(un.prunable_targets(model), method="nm", mode="layerwise", sparsity=0.0, nm=(2, 4))
    model = un.remove_pruning_reparameterization(model)
    report = semi_structured_report(model, n=2, m=4, device=CUDA, batch_sizes=[256], warmup=3, repeats=10)
    assert [r["eligible"] for r in report["layers"]] == [True, False], report["layers"]
    (timing,) = report["timings"]
    assert timing["dense_ms"] > 0 and timing["sparse_ms"] > 0 and timing["speedup"] > 0
    assert timing["max_abs_diff"] < 5e-2  # the same fp16 product through the sparse kernel


def test_ddp_one_process_nccl_train_step_on_cuda(tmp_path, monkeypatch):
    import torch.distributed as torch_dist

    from tools.modeling.checkpoint import unwrap

    # One process on one machine: a file store (no port to pick) and NCCL's bootstrap on loopback,
    # so a sandbox without other network interfaces works too.
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", os.environ.get("NCCL_SOCKET_IFNAME", "lo"))
    torch_dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = nn.parallel.DistributedDataParallel(tiny_model(), device_ids=[CUDA.index or 0])
        data = build_data(DATA, seed=0, device=CUDA, rank=0, world_size=torch_dist.get_world_size())
        stats = train_one_epoch(model, data.train, sgd(model), device=CUDA, step=StepOptions(amp="bf16"))
        result = evaluate(unwrap(model), data.test, device=CUDA)
        assert torch.isfinite(torch.tensor(stats["loss"])) and result["num_samples"] == 128
        assert unwrap(model) is model.module
    finally:
        torch_dist.destroy_process_group()


def test_scripts_train_prune_structured_export_profile_on_cuda(tmp_path):
    from conftest import ROOT

    import scripts.export_onnx as export_script
    import scripts.profile as profile_script
    import scripts.prune_structured as prune_script
    import scripts.train as train_script

    cuda = ["--device", "cuda"]
    train_script.main(
        [
            "--config",
            str(ROOT / "cfgs" / "quickstart.yaml"),
            "--save-dir",
            str(tmp_path / "train"),
            "--set",
            *TINY,
            "train.epochs=2",
            "train.amp=bf16",
            "train.channels_last=true",
            *cuda,
        ]
    )
    trained = yaml.safe_load((tmp_path / "train" / "metrics.yaml").read_text())
    assert trained["device"].startswith("cuda") and trained["epochs"] == 2
    ckpt = tmp_path / "train" / "best_model.pth"
    prune_script.main(
        [
            "--checkpoint",
            str(ckpt),
            "--save-dir",
            str(tmp_path / "pruned"),
            "--method",
            "l2",
            "--target-macs-reduction",
            "0.4",
            "--epochs",
            "1",
            "--set",
            "finetune.kd.alpha=0.5",
            *cuda,
        ]
    )
    pruned = yaml.safe_load((tmp_path / "pruned" / "metrics.yaml").read_text())
    assert 39.0 <= pruned["macs_reduction_pct"] <= 41.5
    pruned_ckpt = tmp_path / "pruned" / "pruned_model.pth"
    export_script.main(["--checkpoint", str(pruned_ckpt), "--verify", "--save-dir", str(tmp_path / "export")])
    exported = yaml.safe_load((tmp_path / "export" / "export.yaml").read_text())
    assert exported["onnx"]["verified"] and exported["torchscript"]["verified"]
    out = tmp_path / "profile.yaml"
    profile_script.main(
        [
            "--baseline",
            str(ckpt),
            "--pruned",
            str(pruned_ckpt),
            "--measure-latency",
            "--batch-sizes",
            "64",
            "--save-results",
            str(out),
            "--set",
            "profile.repeats=10",
            *cuda,
        ]
    )
    profile = yaml.safe_load(out.read_text())
    assert all(m["latency"]["torch"][64]["device"].startswith("cuda") for m in profile["models"])
