"""Benchmark recipes: every YAML in cfgs/bench/ with a `bench:` section is one recipe and one row
(or, for profile runs, a group of rows) of docs/benchmarks.md; here they are found, checked, ordered
by what they need, fingerprinted, and their targets judged.

    uv run python -m scripts.benchmark --list

    benchmarks = discover(Path("cfgs/bench"))
    for b in plan(benchmarks, ["resnet20_l2_macs50_ft6"]): ...   # its baseline first

A benchmark's run folder is results/bench/<name>/; a row with `bench.seeds: [0, 1, 2]` runs once
per seed (`train.seed`, i.e. fine-tuning seed for a pruning row: same baseline) into
results/bench/<name>/seed<k>/. A run is done when its script's result file exists (each script
writes it last, atomically) and the runner's record says it ran from the recipe and needed rows as
they are now (a fingerprint; records from before fingerprints are trusted). Targets are judged on
the mean over seeds, and one whose margin is inside one standard deviation says "within noise".
Running: tools.workflows.bench_runner; the doc: tools.workflows.bench_doc.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from tools.core.config import Config, config_to_dict, load_config
from tools.core.errors import UserError
from tools.core.fingerprint import digest, fingerprint, stale_reason
from tools.core.io import read_yaml_mapping
from tools.core.run_folder import (
    BENCHMARK_RECORD,
    BEST,
    LOADER_SPEED,
    METRICS,
    PROFILE,
    PRUNED_MODEL,
    QUANTIZE_RECORD,
)


@dataclass(frozen=True)
class ScriptSpec:
    result: str  # written last by the script: its existence means the run finished
    model: str | None  # the model file a later benchmark can start from


SCRIPTS = {
    "train": ScriptSpec(METRICS, BEST),
    "prune_structured": ScriptSpec(METRICS, PRUNED_MODEL),
    "prune_unstructured": ScriptSpec(METRICS, PRUNED_MODEL),
    "profile": ScriptSpec(PROFILE, None),
    "loader_speed": ScriptSpec(LOADER_SPEED, None),
    "quantize": ScriptSpec(QUANTIZE_RECORD, "model.onnx"),  # model.int8.onnx lies beside it
}

COMMAND = "uv run python -m scripts.benchmark --run {name}"

# target name -> (measured value it bounds, comparison, how the value reads)
TARGETS = {
    "max_drop": ("drop", "<=", "top-1 drop {:.2f} pts"),
    "min_macs_reduction_pct": ("macs_reduction_pct", ">=", "MACs reduction {:.1f}%"),
    "max_finetune_fraction": ("finetune_fraction", "<=", "fine-tune epochs / baseline epochs {:.2f}"),
    "min_latency_ratio": ("latency_ratio", ">=", "latency reduction / MACs reduction {:.2f}"),
    "min_latency_reduction_pct": ("latency_reduction_pct", ">=", "measured latency reduction {:.1f}%"),
    "min_loader_ratio": ("loader_ratio", ">=", "loader / step images/s {:.1f}x"),
    "max_wall_min": ("wall_min", "<=", "wall time {:.1f} min"),
    "min_speedup": ("speedup", ">=", "speed-up vs the baseline at the largest batch {:.2f}x"),
    "min_size_ratio": ("size_ratio", ">=", "file {:.2f}x smaller than the baseline's"),
    # the deployed INT8 file of a structured.latency.backend onnxruntime-int8 row (metrics.yaml int8_*)
    "max_int8_drop": ("int8_drop", "<=", "INT8 file's top-1 drop vs the FP32 baseline {:.2f} pts"),
    "min_int8_speedup_vs_dense_fp32": ("int8_speedup_vs_dense_fp32", ">=", "INT8 file vs dense FP32 {:.2f}x"),
    "min_int8_speedup_vs_dense_int8": ("int8_speedup_vs_dense_int8", ">=", "INT8 file vs dense INT8 {:.2f}x"),
    "min_int8_size_ratio": ("int8_size_ratio_vs_dense_fp32", ">=", "INT8 file {:.2f}x smaller than dense FP32"),
}
DROPS = ("drop", "int8_drop")  # accuracy bounds: never judged on test-selected checkpoints


@dataclass
class Benchmark:
    name: str
    path: Path
    cfg: Config
    description: str  # the YAML's leading comment

    @property
    def script(self) -> str:
        return self.cfg.bench.script

    @property
    def seeds(self) -> list[int | None]:
        """The row's runs: one per `bench.seeds` entry, or one unseeded run (None)."""
        return list(self.cfg.bench.seeds) or [None]

    def run_dir(self, results_root: Path, seed: int | None = None) -> Path:
        """The row's folder, or with a seed the folder of that seed's run."""
        return results_root / self.name if seed is None else results_root / self.name / f"seed{seed}"

    def result_path(self, results_root: Path, seed: int | None = None) -> Path:
        return self.run_dir(results_root, seed) / SCRIPTS[self.script].result

    def todo(self, results_root: Path, only_seeds: list[int] | None = None) -> list[int | None]:
        """The unfinished runs; `only_seeds` keeps a seeded row's runs to those seeds (an unseeded row's one run stays)."""
        done = self.done_seeds(results_root)
        return [s for s in self.seeds if s not in done and (only_seeds is None or s is None or s in only_seeds)]

    def done_seeds(self, results_root: Path) -> list[int | None]:
        """The runs that finished from the recipe as it is now."""
        return [
            s
            for s in self.seeds
            if self.result_path(results_root, s).is_file() and self.stale_reason(results_root, s) is None
        ]

    def done(self, results_root: Path) -> bool:
        """Every run of the row has finished."""
        return len(self.done_seeds(results_root)) == len(self.seeds)

    def fingerprint(self, results_root: Path) -> dict:
        """The recipe (less how the doc shows it and which seeds run) and the records of the rows it needs."""
        recipe = config_to_dict(self.cfg)
        recipe.pop("pipeline", None)  # read by scripts.pipeline only, which no row runs: adding it stales nothing
        _drop_legacy(recipe, ADDED_KEYS)
        recipe["bench"] = {k: v for k, v in recipe["bench"].items() if k not in ("table", "targets", "seeds")}
        needs = {n: digest(read_yaml_mapping(need_record(results_root / n))) for n in self.cfg.bench.needs}
        return fingerprint(config={"recipe": recipe, "needs": needs}, argv=[self.script])

    def stale_reason(self, results_root: Path, seed: int | None = None) -> str | None:
        """Why a run's result no longer matches its recipe; None when it does or was recorded without a fingerprint."""
        recorded = (read_yaml_mapping(self.run_dir(results_root, seed) / BENCHMARK_RECORD) or {}).get("fingerprint")
        return None if recorded is None else stale_reason(recorded, self.fingerprint(results_root))

    def state(self, results_root: Path) -> str:
        """done | stale (a result from another recipe or baseline) | partial (started, not finished;
        with seeds: 'partial 1/3') | pending"""
        if self.done(results_root):
            return "done"
        if any(self.result_path(results_root, s).is_file() and self.stale_reason(results_root, s) for s in self.seeds):
            return "stale"
        finished = len(self.done_seeds(results_root))
        if finished:
            return f"partial {finished}/{len(self.seeds)}"
        return "partial" if self.run_dir(results_root).exists() else "pending"


# Config keys added after records were made: the value that behaves as before they existed, and
# whether a recipe reads the key at all. Left out of the fingerprint at that value or where unread,
# so adding an option stales no record, even when its default is new; otherwise it counts as usual.
ADDED_KEYS = {
    "structured.latency.allocation": ("per_ms", lambda recipe: recipe["structured"]["target_latency_reduction"] > 0),
    "export.rtol": (0.0, lambda recipe: recipe["bench"]["script"] == "export_onnx"),  # only --verify reads it
    # every recorded row read its images on the fast path, where "dataset" statistics were the rule
    "data.normalize": ("dataset", lambda recipe: True),
    "data.mean": ([], lambda recipe: True),
    "data.std": ([], lambda recipe: True),
    "quantize.deploy": (False, lambda recipe: True),
    "quantize.keep_fp32": ([], lambda recipe: True),
}


def _drop_legacy(recipe: dict, keys: dict) -> None:
    for key, (legacy, reads) in keys.items():
        *parents, leaf = key.split(".")
        section = recipe
        for part in parents:
            section = section[part]
        if section[leaf] == legacy or not reads(recipe):
            del section[leaf]


def need_record(row_dir: Path) -> Path:
    """The runner's record of the run a dependent row starts from (a seeded row: its first seed's)."""
    seeded = sorted(row_dir.glob(f"seed*/{BENCHMARK_RECORD}"), key=lambda p: int(p.parent.name[4:]))
    return row_dir / BENCHMARK_RECORD if (row_dir / BENCHMARK_RECORD).is_file() or not seeded else seeded[0]


# ----------------------------------------------------------------------------- discovery
def leading_comment(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text.startswith(("uv run", "--")):  # command examples are not description
            continue
        lines.append(text)
    return " ".join(lines)


def discover(bench_dir: Path) -> dict[str, Benchmark]:
    """Every cfgs/bench/*.yaml whose `bench.script` is set; files without one are shared bases."""
    if not bench_dir.is_dir():
        raise UserError(f"benchmark folder {bench_dir} not found; run from the repo root (it holds cfgs/bench/)")
    benchmarks = {}
    for path in sorted(bench_dir.glob("*.yaml")):
        cfg = load_config(path)
        if cfg.bench.script:
            benchmarks[path.stem] = Benchmark(path.stem, path, cfg, leading_comment(path))
    for b in benchmarks.values():
        validate(b, benchmarks)
    return benchmarks


def validate(b: Benchmark, benchmarks: dict[str, Benchmark]) -> None:
    where = f"{b.path}: bench"
    if b.script not in SCRIPTS:
        raise UserError(f"{where}.script {b.script!r} is not one of {', '.join(SCRIPTS)}")
    if b.cfg.bench.device not in ("cpu", "cuda"):
        raise UserError(f"{where}.device {b.cfg.bench.device!r} must be cpu or cuda")
    if not b.cfg.bench.table:
        raise UserError(f"{where}.table is empty; name the docs/benchmarks.md table the row belongs to")
    if b.cfg.bench.expected_min < 0:
        raise UserError(f"{where}.expected_min {b.cfg.bench.expected_min:g} must be >= 0 minutes (0 = no estimate)")
    for key in b.cfg.bench.targets:
        if key not in TARGETS:
            raise UserError(f"{where}.targets.{key} is not a known target; choose from {', '.join(TARGETS)}")
    wanted = {"train": 0, "loader_speed": 0, "prune_structured": 1, "prune_unstructured": 1}.get(b.script)
    needs = b.cfg.bench.needs
    if b.script == "quantize" and len(needs) > 1:  # 0: the checkpoint is named in bench.args
        raise UserError(f"{where}.needs has {len(needs)} entries; quantize takes at most 1")
    if wanted is not None and len(needs) != wanted or b.script == "profile" and len(needs) < 2:
        count = "a baseline and at least one pruned model" if b.script == "profile" else f"{wanted}"
        raise UserError(f"{where}.needs has {len(needs)} entries; {b.script} takes {count}")
    if len(set(b.cfg.bench.seeds)) != len(b.cfg.bench.seeds):
        raise UserError(f"{where}.seeds {b.cfg.bench.seeds} repeats a seed; list each seed once")
    for need in needs:
        if need not in benchmarks:
            raise UserError(f"{where}.needs names {need!r}, which is no benchmark in {b.path.parent}")
        if SCRIPTS[benchmarks[need].script].model is None:
            raise UserError(f"{where}.needs names {need!r}, a {benchmarks[need].script} benchmark with no model")


def plan(benchmarks: dict[str, Benchmark], names: list[str]) -> list[Benchmark]:
    """`names` and everything they need, dependencies first."""
    order: list[Benchmark] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in chain:
            raise UserError(f"benchmarks depend on each other in a cycle: {' -> '.join(chain + (name,))}")
        if name not in benchmarks:
            close = difflib.get_close_matches(name, benchmarks, n=3)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise UserError(f"unknown benchmark {name!r}; {hint}--list shows them all")
        for need in benchmarks[name].cfg.bench.needs:
            visit(need, chain + (name,))
        if benchmarks[name] not in order:
            order.append(benchmarks[name])

    for name in names:
        visit(name, ())
    return order


# ----------------------------------------------------------------------------- targets
def check_targets(targets: dict[str, float], values: dict, spreads: dict | None = None) -> str:
    """'met', or 'MISSED: <what> <op> <bound>; ...'; values that were not measured read 'n/a'. With
    `spreads` (standard deviations over seeds), a verdict whose margin to its bound is inside one
    standard deviation says "within noise": another seed could have landed on the other side. An
    accuracy bound is never judged on figures whose checkpoint was chosen on the test set
    (`values["selected_on"] == "test"`): that figure is the test set's own best."""
    if not targets:
        return "-"
    if values.get("selected_on") == "test" and any(TARGETS[key][0] in DROPS for key in targets):
        others = {key: bound for key, bound in targets.items() if TARGETS[key][0] not in DROPS}
        verdict = check_targets(others, values, spreads) if others else "-"
        refused = "top-1 drop not judged: its checkpoints were chosen on the test set (data.val_split 0); rerun with data.val_split > 0"
        if verdict.startswith("MISSED") or verdict.startswith("n/a"):
            return f"{verdict}; {refused}"
        return (
            "not judged: "
            + refused.removeprefix("top-1 drop not judged: ")
            + ("" if verdict == "-" else f" (other targets {verdict})")
        )
    missed, unknown, noisy = [], [], []
    for key, bound in targets.items():
        value_key, op, text = TARGETS[key]
        value, spread = values.get(value_key), (spreads or {}).get(value_key)
        if value is None:
            unknown.append(key)
            continue
        noise = f"within noise, std {spread:.2f}" if spread and abs(value - bound) <= spread else ""
        if not (value <= bound if op == "<=" else value >= bound):
            missed.append(
                f"{text.format(value)} {'>' if op == '<=' else '<'} {bound:g}" + (f" ({noise})" if noise else "")
            )
        elif noise:
            noisy.append(f"{text.format(value)}, {noise.removeprefix('within noise, ')}")
    if missed:
        return "MISSED: " + "; ".join(missed)
    if unknown:
        return f"n/a ({', '.join(unknown)} not measured)"
    return f"met, within noise ({'; '.join(noisy)})" if noisy else "met"
