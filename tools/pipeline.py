"""The whole bootcamp as one resumable sequence of steps, each run through its script's main().

    uv run python -m scripts.pipeline --config cfgs/quickstart.yaml

    steps = pipeline_steps(config="cfgs/quickstart.yaml", run_dir=Path("results/pipeline/quickstart"), sets=[])
    for step in steps: step.done()  # True when the step's result file exists

A step is done when its result file exists (every script writes it last, atomically), so a
re-run skips finished steps and a failed step leaves the earlier ones intact.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass
class Step:
    name: str
    result: Path  # written last by the step: its existence means the step finished
    run: Callable[[], None]

    def done(self) -> bool:
        return self.result.is_file()


def _script(name: str, argv: list[str]) -> Callable[[], None]:
    def run() -> None:
        importlib.import_module(f"scripts.{name}").main(argv)

    return run


def pipeline_steps(*, config: str, run_dir: Path, sets: list[str]) -> list[Step]:
    """train -> eval -> unstructured prune + fine-tune -> structured prune + fine-tune ->
    export (verified) -> INT8 quantization of the structured and the dense model (ONNX Runtime) ->
    profile (the checkpoints and the four ONNX files) -> report, all inside `run_dir`."""
    from tools.report import write_report

    d = {name: run_dir / name for name in ("train", "eval", "unstructured", "structured", "export", "quantize",
                                                 "quantize_dense", "profile")}
    baseline = str(d["train"] / "best_model.pth")
    common = ["--config", config] + (["--set", *sets] if sets else [])
    structured_model = str(d["structured"] / "pruned_model.pth")
    unstructured_model = str(d["unstructured"] / "pruned_model.pth")
    onnx_files = [str(d[q] / name) for q in ("quantize_dense", "quantize") for name in ("model.onnx", "model.int8.onnx")]
    return [
        Step("train", d["train"] / "metrics.yaml", _script("train", common + ["--save-dir", str(d["train"])])),
        Step("eval", d["eval"] / "eval_metrics.yaml",
             _script("eval", ["--checkpoint", baseline, "--save-dir", str(d["eval"])] + common)),
        Step("prune_unstructured", d["unstructured"] / "metrics.yaml",
             _script("prune_unstructured", ["--checkpoint", baseline, "--save-dir", str(d["unstructured"])] + common)),
        Step("prune_structured", d["structured"] / "metrics.yaml",
             _script("prune_structured", ["--checkpoint", baseline, "--save-dir", str(d["structured"])] + common)),
        Step("export", d["export"] / "export.yaml",
             _script("export_onnx", ["--checkpoint", structured_model, "--verify", "--save-dir", str(d["export"])] + common)),
        Step("quantize", d["quantize"] / "quantize.yaml",
             _script("quantize", ["--checkpoint", structured_model, "--save-dir", str(d["quantize"])] + common)),
        Step("quantize_dense", d["quantize_dense"] / "quantize.yaml",
             _script("quantize", ["--checkpoint", baseline, "--save-dir", str(d["quantize_dense"])] + common)),
        Step("profile", d["profile"] / "profile.yaml",
             _script("profile", ["--baseline", baseline, "--pruned", structured_model, unstructured_model, *onnx_files,
                                 "--measure-latency", "--backend", "both",
                                 "--save-results", str(d["profile"] / "profile.yaml")] + common)),
        Step("report", run_dir / "report.md", lambda: print(f"wrote {write_report([run_dir], run_dir)}")),
    ]
