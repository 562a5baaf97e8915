"""The whole config, composed: imports every layer's sections (each registers itself with
tools.core.config) and fixes their order in config.yaml; also the sections only scripts and
workflows read (output, bench, pipeline). Every script imports this first (scripts/__init__.py,
scripts/_file_form.py), and so does tests/conftest.py: no config loads with a section missing.

    >>> from tools.core.config import Config, load_config
    >>> list(vars(Config()))[:4]
    ['data', 'model', 'train', 'finetune']
    >>> load_config(None, overrides=["structured.method=l1"]).structured.method
    'l1'

A new section: a dataclass with `check` beside the code that reads it, decorated with
`@config_section("name")`; its module imported here and its name added to ORDER.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import datasets.config  # noqa: F401  (data)
import tools.deploy.config  # noqa: F401  (quantize)
import tools.measure.config  # noqa: F401  (profile)
import tools.modeling.config  # noqa: F401  (model, export)
import tools.pruning.config  # noqa: F401  (unstructured, structured, sensitivity, pai)
import tools.training.config  # noqa: F401  (train, finetune)
from tools.core.config import Bound, compose, config_section

# config.yaml's order, and that of the resolved dict benchmark fingerprints digest: never reorder.
ORDER = (
    "data",
    "model",
    "train",
    "finetune",
    "unstructured",
    "structured",
    "sensitivity",
    "export",
    "pai",
    "profile",
    "quantize",
    "output",
    "bench",
    "pipeline",
)


@config_section("output")
@dataclass
class OutputConfig:
    root: str = "results"  # run folders are created under <root>/<script>/
    name: str = ""  # run folder name; "" -> the config file's stem


@config_section("bench")
@dataclass
class BenchConfig:
    # Read by scripts.benchmark only: a file in cfgs/bench/ is both a run's recipe and one row of
    # docs/benchmarks.md. Every other script ignores this section.
    script: str = ""  # train | prune_structured | prune_unstructured | profile | loader_speed | quantize
    needs: list[str] = field(default_factory=list)  # benchmarks whose models this row uses (profile: baseline first)
    table: str = ""  # the docs/benchmarks.md table the row belongs to
    device: str = "cpu"  # cpu | cuda: the device the row is defined for (cuda rows stay pending without a GPU)
    args: list[str] = field(default_factory=list)  # extra flags for the script, e.g. ["--backend", "both"]
    targets: dict[str, float] = field(
        default_factory=dict
    )  # e.g. {max_drop: 1.0}; see tools.workflows.bench_recipe.TARGETS
    seeds: list[int] = field(default_factory=list)  # one run per seed (train.seed) in <row>/seed<k>/; [] -> one run
    expected_min: float = (
        0.0  # estimated wall minutes of the row (an estimate, printed before it runs; --budget-min uses it); 0 = none
    )
    priority: int = 0  # --run all runs higher priorities first (the headline rows); equal ones in name order

    def check(self, bound: Bound) -> None:
        bound("seeds", ge=0, lt=2**32)


@config_section("pipeline")
@dataclass
class PipelineConfig:
    # Read by scripts.pipeline only.
    latency_target_reduction: float = 0.0  # > 0: a second structured step prunes to this MEASURED latency reduction (timed as structured.latency says), beside the MACs-targeted one
    int8_latency_target_reduction: float = 0.0  # > 0: a third structured step prunes to this MEASURED INT8 latency reduction (structured.latency.backend onnxruntime-int8) and deploys model.int8.onnx

    def check(self, bound: Bound) -> None:
        bound("latency_target_reduction", ge=0, lt=1, why="a fraction of latency; 0 = no latency-targeted step")
        bound(
            "int8_latency_target_reduction",
            ge=0,
            lt=1,
            why="a fraction of INT8 latency; 0 = no INT8-targeted step",
        )


compose(ORDER)
