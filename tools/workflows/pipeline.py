"""The whole bootcamp as one resumable sequence of steps, each run through its script's main().

    uv run python -m scripts.pipeline --config cfgs/quickstart.yaml

    steps = pipeline_steps(config="cfgs/quickstart.yaml", run_dir=Path("results/pipeline/quickstart"), sets=[])
    steps = pipeline_steps(config="cfgs/quickstart.yaml", run_dir=Path("results/pipeline/quickstart"), sets=[],
                           latency_target=0.4, int8_latency_target=0.4)   # + the FP32 and the INT8 latency rows
    records = StepRecords(Path("results/pipeline/quickstart"))
    records.stale_reason(steps[0], config={})   # None when the step finished from exactly these inputs

A step is done when `<run_dir>/steps.yaml` records that it finished from the same fingerprint
(resolved config, command line, input checkpoints' sha256, project version) and its result file
is still the one it wrote. Otherwise it runs again, and so does every step after it; its folder is
emptied first, so nothing of an earlier run is read as this run's result.

The structured rows: the MACs target (structured/, quantized by scripts.quantize into quantize/),
`pipeline.latency_target_reduction` (structured_latency/, timed as structured.latency says) and
`pipeline.int8_latency_target_reduction` (structured_int8/, structured.latency.backend set to
onnxruntime-int8 after the user's --set, so it writes model.int8.onnx with its speed-ups over the
dense FP32 and dense INT8 files). The latency steps are optional and come last before the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from tools.core.cli import resolve_config, run_name
from tools.core.config import config_to_dict
from tools.core.fingerprint import file_sha256, fingerprint, stale_reason
from tools.core.io import atomic_write_yaml, read_yaml_mapping
from tools.core.run_folder import (
    BEST,
    EVAL_METRICS,
    EXPORT_RECORD,
    INT8_MODEL,
    METRICS,
    PROFILE,
    PRUNED_MODEL,
    QUANTIZE_RECORD,
    REPORT,
    STEPS,
    RunFolder,
    clear,
)
from tools.workflows.launch import in_process


@dataclass
class Step:
    name: str
    result: Path  # written last by the step
    run: Callable[[], None]
    argv: list[str] = field(default_factory=list)  # the script's own flags (--config / --set count as resolved config)
    inputs: list[Path] = field(default_factory=list)  # files the step reads (their sha256 is part of it)
    sections: tuple[str, ...] | None = None  # the config sections its script reads (None: all)
    optional: bool = False  # its failure is reported and the pipeline goes on (a re-run retries it)

    def fingerprint(self, config: dict) -> dict:
        """Only the sections the step reads count: a changed structured.* must not retrain the baseline."""
        used = config if self.sections is None else {k: config.get(k) for k in self.sections}
        return fingerprint(config=used, argv=[self.name, *self.argv], inputs=self.inputs)

    def clear(self, run_dir: Path) -> None:
        """Remove what an earlier run of this step left, so none of it is read as this run's result."""
        folder = self.result.parent
        if folder != run_dir:
            clear(folder)  # never a folder another live run holds (a train started into it by hand)
        else:
            self.result.unlink(missing_ok=True)


class StepRecords:
    """`<run_dir>/steps.yaml`: for each finished step, its fingerprint and its result file's sha256."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / STEPS
        self.records: dict = (read_yaml_mapping(self.path) or {}).get("steps") or {}

    def stale_reason(self, step: Step, config: dict) -> str | None:
        """None when `step` finished from these inputs and its result is untouched; else why not."""
        record = self.records.get(step.name)
        if record is None or not step.result.is_file():
            return "not run yet"
        if record.get("result_sha256") != file_sha256(step.result):
            return f"{step.result} was rewritten by another run"
        return stale_reason(record.get("fingerprint"), step.fingerprint(config))

    def forget_from(self, steps: list[Step], index: int) -> None:
        """Drop the records of steps[index:] (written before they start, so a kill never leaves them 'done')."""
        names = {s.name for s in steps[index:]}
        self.records = {k: v for k, v in self.records.items() if k not in names}
        self._write()

    def finish(self, step: Step, fp: dict) -> None:
        self.records[step.name] = {
            "fingerprint": fp,
            "result_sha256": file_sha256(step.result),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self._write()

    def _write(self) -> None:
        atomic_write_yaml(self.path, {"steps": self.records})


def _script(name: str, argv: list[str]) -> Callable[[], None]:
    return in_process(name, argv)  # in this process: a step's UserError / SystemExit is read by run_steps


BASE_SECTIONS = ("data", "model", "train")  # every script builds data and model from these
SECTIONS = {
    "train": (),
    "eval": ("profile",),
    "prune_unstructured": ("finetune", "unstructured", "profile"),
    "prune_structured": ("finetune", "structured"),
    # Not "pipeline": a latency step's target is on its command line, so changing the other
    # step's target (or adding a pipeline key) leaves it done.
    "prune_structured_latency": ("finetune", "structured"),
    # export and quantize: it exports and quantizes model.int8.onnx as scripts.quantize does
    "prune_structured_int8": ("finetune", "structured", "export", "quantize"),
    "export": ("export",),
    "quantize": ("export", "quantize"),
    "quantize_dense": ("export", "quantize"),
    "profile": ("profile",),
}


def _step(name: str, script: str, result: Path, argv: list[str], inputs: list[Path], common: list[str]) -> Step:
    return Step(name, result, _script(script, argv + common), argv, inputs, BASE_SECTIONS + SECTIONS[name])


INT8_BACKEND = "structured.latency.backend=onnxruntime-int8"  # after the user's --set: the INT8 step times INT8


def _latency_step(name: str, folder: Path, baseline: Path, target: float, common: list[str]) -> Step:
    """A structured prune + fine-tune of `baseline` to a measured latency reduction of `target`.
    Last before the report and optional: a machine too busy to time it loses only this row."""
    argv = ["--checkpoint", str(baseline), "--save-dir", str(folder), "--target-latency-reduction", f"{target:g}"]
    step = _step(name, "prune_structured", folder / METRICS, argv, [baseline], common)
    step.optional = True
    return step


def pipeline_steps(
    *, config: str, run_dir: Path, sets: list[str], latency_target: float = 0.0, int8_latency_target: float = 0.0
) -> list[Step]:
    """train -> eval -> unstructured prune + fine-tune -> structured prune + fine-tune (MACs target)
    -> export (verified) -> INT8 quantization of the structured and the dense model (ONNX Runtime)
    -> profile (the checkpoints and the four ONNX files) -> [with `latency_target` > 0: structured
    prune + fine-tune to that measured FP32 ONNX Runtime latency reduction, optional] -> [with
    `int8_latency_target` > 0: the same to that measured INT8 latency reduction (backend
    onnxruntime-int8), which writes model.int8.onnx, optional] -> report, all inside `run_dir`.
    The report shows the structured rows side by side."""
    from tools.reports.report import write_report

    d = {
        name: run_dir / name
        for name in (
            "train",
            "eval",
            "unstructured",
            "structured",
            "structured_latency",
            "structured_int8",
            "export",
            "quantize",
            "quantize_dense",
            "profile",
        )
    }
    baseline = d["train"] / BEST
    common = ["--config", config] + (["--set", *sets] if sets else [])
    structured_model = d["structured"] / PRUNED_MODEL
    pruned = [structured_model, d["unstructured"] / PRUNED_MODEL]
    latency_steps = [
        _latency_step(name, d[folder], baseline, target, common + extra)
        for name, folder, target, extra in (
            ("prune_structured_latency", "structured_latency", latency_target, []),
            ("prune_structured_int8", "structured_int8", int8_latency_target, ["--set", INT8_BACKEND]),
        )
        if target > 0
    ]
    onnx_files = [d[q] / name for q in ("quantize_dense", "quantize") for name in ("model.onnx", INT8_MODEL)]
    results = [
        d["train"] / METRICS,
        d["eval"] / EVAL_METRICS,
        d["unstructured"] / METRICS,
        d["structured"] / METRICS,
        d["export"] / EXPORT_RECORD,
        d["quantize"] / QUANTIZE_RECORD,
        d["quantize_dense"] / QUANTIZE_RECORD,
        d["profile"] / PROFILE,
    ]
    return [
        _step("train", "train", results[0], ["--save-dir", str(d["train"])], [], common),
        _step(
            "eval",
            "eval",
            results[1],
            ["--checkpoint", str(baseline), "--save-dir", str(d["eval"])],
            [baseline],
            common,
        ),
        _step(
            "prune_unstructured",
            "prune_unstructured",
            results[2],
            ["--checkpoint", str(baseline), "--save-dir", str(d["unstructured"])],
            [baseline],
            common,
        ),
        _step(
            "prune_structured",
            "prune_structured",
            results[3],
            ["--checkpoint", str(baseline), "--save-dir", str(d["structured"])],
            [baseline],
            common,
        ),
        _step(
            "export",
            "export_onnx",
            results[4],
            ["--checkpoint", str(structured_model), "--verify", "--save-dir", str(d["export"])],
            [structured_model],
            common,
        ),
        _step(
            "quantize",
            "quantize",
            results[5],
            ["--checkpoint", str(structured_model), "--save-dir", str(d["quantize"])],
            [structured_model],
            common,
        ),
        _step(
            "quantize_dense",
            "quantize",
            results[6],
            ["--checkpoint", str(baseline), "--save-dir", str(d["quantize_dense"])],
            [baseline],
            common,
        ),
        _step(
            "profile",
            "profile",
            results[7],
            [
                "--baseline",
                str(baseline),
                "--pruned",
                *map(str, pruned),
                *map(str, onnx_files),
                "--measure-latency",
                "--backend",
                "both",
                "--save-dir",
                str(d["profile"]),
            ],
            [baseline, *pruned, *onnx_files],
            common,
        ),
        *latency_steps,
        Step(
            "report", run_dir / REPORT, lambda: print(f"wrote {write_report([run_dir], run_dir)}"), ["report"], results
        ),  # a re-run latency step re-runs the report anyway: it comes after
    ]


def run_steps(steps: list[Step], *, run_dir: Path, config: dict, force: bool) -> None:
    """Run every step that is not done from these inputs, and every step after the first one that runs.
    `force` forgets every step before the first one starts, so a killed forced run leaves nothing 'done'."""
    from tools.core.errors import UserError

    records = StepRecords(run_dir)
    if force:
        records.forget_from(steps, 0)
    rerun = False
    for i, step in enumerate(steps):
        head = f"== step {i + 1}/{len(steps)} {step.name}"
        reason = "an earlier step ran again" if rerun else records.stale_reason(step, config)
        if reason is None:
            print(f"{head}: done earlier ({step.result}), skipped")
            continue
        rerun = True
        records.forget_from(steps, i)
        step.clear(run_dir)
        print(f"\n{head}" + ("" if reason == "not run yet" else f" (again: {reason})"), flush=True)
        fp = step.fingerprint(config)  # before it runs: a step must not certify inputs that changed under it
        try:
            step.run()
        except (SystemExit, UserError) as e:  # a script's failure exit (e.g. export verification) or its error line
            why = str(e) if isinstance(e, UserError) else f"exit {e.code}" if e.code else None
            if why and step.optional:
                print(
                    f"step {step.name} did not finish ({why}); it is optional, so the pipeline goes on without it "
                    f"(a re-run retries it)",
                    flush=True,
                )
                continue
            if why:
                raise UserError(
                    f"step {step.name} failed ({why}); earlier steps' outputs in {run_dir} are "
                    f"intact, fix the cause and re-run to resume"
                ) from None
        if not step.result.is_file():
            raise UserError(f"step {step.name} finished without writing {step.result}; re-run with --force")
        records.finish(step, fp)


def pipeline(args) -> None:
    """scripts.pipeline's whole command: `args` as its parse_args returns them."""
    cfg = resolve_config(args)  # fail fast on a bad config, before any step runs
    run_dir = (
        Path(args.save_dir)
        if args.save_dir
        else Path(cfg.output.root) / "pipeline" / run_name(cfg, args.config, "pipeline")
    )
    steps = pipeline_steps(
        config=args.config,
        run_dir=run_dir,
        sets=args.set,
        latency_target=cfg.pipeline.latency_target_reduction,
        int8_latency_target=cfg.pipeline.int8_latency_target_reduction,
    )
    start = time.perf_counter()
    # Locked while it runs; COMPLETE at the end, FAILED with the failing step's error. A re-run continues
    # a finished pipeline (its steps decide what runs again), so a COMPLETE folder is not refused.
    with RunFolder(run_dir).start(resume=True):
        run_steps(steps, run_dir=run_dir, config=config_to_dict(cfg), force=args.force)
        print_verdict(run_dir, time.perf_counter() - start)  # every step's result is this run's or current


def print_verdict(run_dir: Path, elapsed_s: float) -> None:
    metrics = read_yaml_mapping(run_dir / "structured" / METRICS) or {}
    goal = metrics.get("goal", {})
    verdict = "MET" if metrics.get("goal_met") else "NOT MET"
    print(
        f"\npipeline finished in {elapsed_s:.0f} s: structured {metrics.get('method')} pruning removed "
        f"{metrics.get('flops_reduction_pct', 0):.1f}% of FLOPs (FLOPs = 2 x MACs) for a "
        f"{metrics.get('accuracy_drop', 0):.2f}-point top-1 drop: goal {verdict} "
        f"(>={goal.get('min_flops_reduction_pct')}% FLOPs, <={goal.get('max_accuracy_drop')} pts drop)"
    )
    latency = read_yaml_mapping(run_dir / "structured_latency" / METRICS) or {}
    if latency.get("latency"):
        lat = latency["latency"]
        print(
            f"latency-targeted row: measured latency -{lat['measured_reduction_pct']:.1f}% on {lat['backend']} "
            f"batch {lat['batch_size']} (target {lat['target_pct']:g}%), {latency['flops_reduction_pct']:.1f}% of FLOPs "
            f"removed, {latency.get('accuracy_drop', 0):.2f}-point top-1 drop"
        )
    int8 = read_yaml_mapping(run_dir / "structured_int8" / METRICS) or {}
    if int8.get("int8"):
        print(
            f"INT8-targeted row: {run_dir / 'structured_int8' / INT8_MODEL} "
            f"{int8['int8_speedup_vs_dense_fp32']:.2f}x vs dense FP32, {int8['int8_speedup_vs_dense_int8']:.2f}x vs "
            f"dense INT8, ONNX Runtime top-1 {int8['int8_top1']:.2f}%"
        )
    print(f"report: {run_dir / REPORT}")
