"""bf16 on CPU (issue 29, item 2): autocast where the CPU has native bf16 (AVX512-BF16 / AMX),
fp32 with a warning naming why everywhere else; the step benchmark can time either precision."""

import warnings

import pytest
import torch
from torch import nn

from tools.training import engine

CPU = torch.device("cpu")


def test_bf16_on_a_cpu_with_native_bf16_autocasts(monkeypatch):
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: True)
    assert engine.check_amp("bf16", CPU) == "bf16"
    with engine.amp_context(CPU, "bf16"):
        out = nn.Linear(4, 2)(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16


def test_bf16_without_native_support_trains_in_fp32_and_says_why(monkeypatch):
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no native bf16"):
        assert engine.check_amp("bf16", CPU) == "none"
    with engine.amp_context(CPU, "none"):
        assert nn.Linear(4, 2)(torch.randn(3, 4)).dtype == torch.float32


def test_fp16_stays_cuda_only():
    with pytest.warns(UserWarning, match="needs CUDA"):
        assert engine.check_amp("fp16", CPU) == "none"
    with engine.amp_context(CPU, "fp16"):
        assert nn.Linear(4, 2)(torch.randn(3, 4)).dtype == torch.float32


@pytest.mark.cpu_capability
def test_native_bf16_detection_follows_the_reported_capability():
    # with ATEN_CPU_CAPABILITY=avx2 (the CI's second run) torch reports AVX2: never native bf16
    if torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2"):
        assert engine.cpu_has_native_bf16() is False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert engine.check_amp("bf16", CPU) == ("bf16" if engine.cpu_has_native_bf16() else "none")


def test_the_step_benchmark_times_bf16_steps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    loader = [(torch.randn(4, 3, 8, 8), torch.randint(0, 3, (4,))) for _ in range(2)]
    seen = []
    model[2].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    assert engine.train_step_throughput(model, loader, device=CPU, num_batches=2, amp="bf16") > 0
    assert set(seen) == {torch.bfloat16}
