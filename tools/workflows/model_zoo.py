"""Which torchvision classifiers go through structured pruning: the table in docs/models.md.

    uv run python -m scripts.model_zoo_check                       # every model, 32 and 224 px
    uv run python -m scripts.model_zoo_check --models squeezenet1_1 --sizes 32 --records /tmp/r.yaml

    row = check_model("squeezenet1_1", image_size=32)   # {"status": "ok", "macs_reduction_pct": ..., ...}

One row per (model, input size): build it for 10 classes (tools.modeling.registry.build_model: ResNet and
MobileNet families get the CIFAR stem at 32 px, the rest keep their ImageNet stem), prune channels
with the project's own round (tools.runs.prune_structured.prune_round: l2 importance, global ranking,
round_to 8, target 30% of MACs within 1 pt, forward check), save it as this project saves a pruned
model and reload it weights-only in the same process (tools.modeling.checkpoint.load_model), export the
reloaded model to ONNX (opset 17) and run it in ONNX Runtime on a random batch of 2. "ok" needs
every step; otherwise the row says where and why, in one line. The ONNX check is relative: the
largest |PyTorch - ONNX Runtime| difference must be at most 1e-4 x max(1, largest |logit|), since
randomly initialised deep nets produce logits in the thousands.

Rows run one after another in one process on one thread (starting a process per row costs more
than most rows on a busy machine), each stopped after its time limit of *CPU* time (`timeout` rows
say so): a wall-clock limit turned rows that take 7 s on an idle core into timeouts on a loaded or
paused one. The records file keeps finished rows, so a re-run only does what is missing (and the
timeouts of a lower limit) and the doc is rebuilt from the records alone.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import signal
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from tools.core.cli import parse_list
from tools.core.errors import UserError, first_line
from tools.core.io import atomic_write_text, atomic_write_yaml, read_yaml_mapping
from tools.core.run_folder import PRUNED_MODEL_STATE
from tools.modeling.sources import torchvision_names

NUM_CLASSES = 10
TARGET = 0.3
ONNX_RTOL = 1e-4
SIZES = (32, 224)


# ----------------------------------------------------------------------------- one row
def _zoo_config(name: str):
    from tools.core.config import Config

    cfg = Config()
    cfg.model.name = name
    cfg.structured.method = "l2"
    cfg.structured.target_macs_reduction = TARGET
    return cfg


def check_model(name: str, *, image_size: int) -> dict:
    """One row: {"status": "ok" | "fails", "step", "reason", "params", "macs", "macs_reduction_pct", "seconds"}."""
    from tools.modeling.registry import build_from_config

    start = time.perf_counter()
    row: dict = {"model": name, "image_size": image_size}
    cfg = _zoo_config(name)
    shape = (3, image_size, image_size)
    step = "build"
    try:
        torch.manual_seed(0)
        model = build_from_config(cfg.model, num_classes=NUM_CLASSES, input_shape=shape).eval()
        step = "prune"
        pruned, row["params"], row["macs"], row["macs_reduction_pct"] = _prune(model, cfg, shape)
        step = "reload"
        reloaded = _reload(pruned, cfg, shape)
        step = "onnx"
        _check_onnx(reloaded, shape)
        row["status"] = "ok"
    except UserError as e:
        row |= {"status": "fails", "step": step, "reason": str(e)}
    except Exception as e:  # noqa: BLE001 (a model's own failure is this table's finding, not a crash)
        row |= {"status": "fails", "step": step, "reason": f"{type(e).__name__}: {first_line(e, empty='')}"}
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def _prune(model, cfg, shape) -> tuple[torch.nn.Module, int, int, float]:
    from tools.measure.metrics import count_macs_params
    from tools.pruning import structured as st
    from tools.runs.prune_structured import PruneJob, RoundScope, prune_round

    example = torch.zeros(1, *shape)
    st.check_traceable(model, example)
    macs, params = count_macs_params(model, (1, *shape))
    ignored = st.output_layer_names(model, example)
    data = SimpleNamespace(input_shape=shape, num_classes=NUM_CLASSES, train=None)
    scope = RoundScope(example, ignored, baseline={"macs": macs}, original_channels=st.channel_counts(model))
    pruned, info = prune_round(model, PruneJob(data, cfg, torch.device("cpu")), 1, scope)
    return pruned, params, macs, round(info["macs_reduction_pct"], 1)


def _reload(pruned, cfg, shape):
    from tools.core.config import config_to_dict
    from tools.modeling.checkpoint import load_model, save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / PRUNED_MODEL_STATE
        save_checkpoint(path, model=pruned, config=config_to_dict(cfg))
        model, _ = load_model(path, model_cfg=cfg.model, num_classes=NUM_CLASSES, input_shape=shape)
    images = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if not torch.allclose(pruned.eval()(images), model(images), rtol=1e-4, atol=1e-5):
            raise UserError("the weights-only reload computes other outputs than the pruned model")
    return model


def _check_onnx(model, shape) -> None:
    from tools.modeling.export import export_onnx, make_onnx_runner, max_abs_diffs

    images = {"random_bs2": torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, shape, Path(tmp) / "model.onnx", opset=17)
        diff = max_abs_diffs(model, make_onnx_runner(path, num_threads=1), images)["random_bs2"]
    with torch.no_grad():
        scale = max(1.0, float(model(images["random_bs2"]).abs().max()))
    if not diff <= ONNX_RTOL * scale:  # also catches NaN
        raise UserError(f"ONNX Runtime differs from PyTorch by {diff:.2g} (logits up to {scale:.3g})")


# ----------------------------------------------------------------------------- many rows
def row_key(name: str, image_size: int) -> str:
    return f"{name}@{image_size}"


def meta_params(name: str, image_size: int) -> int:
    """Parameters of the model without allocating it (meta device): the memory guard."""
    from tools.modeling.config import ModelConfig
    from tools.modeling.registry import build_from_config

    with torch.device("meta"):
        try:
            model = build_from_config(
                ModelConfig(name=name), num_classes=NUM_CLASSES, input_shape=(3, image_size, image_size)
            )
        except Exception:  # noqa: BLE001 (RegNet computes its widths with tensors, ViT asserts its patch size)
            return _published_params(name)
    return sum(p.numel() for p in model.parameters())


def _published_params(name: str) -> int:
    """torchvision's count for the 1000-class model (its weights' metadata), or 0 when unknown (the
    real build then reports what is wrong)."""
    import torchvision

    try:
        return int(torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"])
    except (ValueError, KeyError, AttributeError):
        return 0


class _RowTimeout(BaseException):  # not an Exception: check_model must not report it as the model's failure
    pass


_ALARMS: list[int] = []  # SIGPROFs seen by the row running now


def _on_alarm(signum, frame):
    # Noted before raising: a raise that lands inside a gc callback (another library's) is
    # swallowed as "unraisable" and the row would look finished when its time was up.
    _ALARMS.append(signum)
    raise _RowTimeout


def run_row(name: str, image_size: int, *, time_limit_s: float, max_params: int) -> dict:
    """check_model in this process (one thread), stopped by SIGPROF after `time_limit_s` of CPU time."""
    params = meta_params(name, image_size)
    if params > max_params:
        return {
            "model": name,
            "image_size": image_size,
            "status": "not run",
            "params": params,
            "reason": f"{params / 1e6:.0f} M parameters, above this run's cap of {max_params / 1e6:.0f} M "
            "(memory of the shared machine)",
        }
    _ALARMS.clear()
    previous = signal.signal(signal.SIGPROF, _on_alarm)
    signal.setitimer(signal.ITIMER_PROF, time_limit_s)
    try:
        row = check_model(name, image_size=image_size)
        if not _ALARMS:
            return row
        raise _RowTimeout
    except _RowTimeout:
        return {
            "model": name,
            "image_size": image_size,
            "status": "timeout",
            "params": params,
            "reason": f"not finished within {time_limit_s:g} s of CPU time on one thread",
            "seconds": time_limit_s,
        }
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
        gc.collect()


def run_zoo(
    names: list[str], sizes: list[int], *, records: Path, time_limit_s: float, max_params: int, force: bool = False
) -> dict:
    """Every missing row of names x sizes (with `force`, every row; a timeout counts as missing when
    `time_limit_s` is above the limit it ran with), smallest size and model first. The
    records file is updated under a lock (several checkers may share it, e.g. one per size) before
    each row, marking it so that a process killed by it (out of memory) is not retried forever,
    and after it."""
    torch.set_num_threads(1)
    names = sorted(names, key=lambda n: meta_params(n, 224))  # small models first: most rows per hour
    for size in sizes:
        for name in names:
            key = row_key(name, size)
            if not (force or _missing(read_records(records).get(key), time_limit_s)):
                continue
            _record(
                records,
                key,
                {
                    "model": name,
                    "image_size": size,
                    "status": "fails",
                    "step": "process",
                    "reason": "the checking process died during this row (out of memory?)",
                },
            )
            row = run_row(name, size, time_limit_s=time_limit_s, max_params=max_params)
            _record(records, key, row)
            print(f"{key}: {row['status']} {row.get('reason', '')} ({row.get('seconds', '-')} s)", flush=True)
    return read_records(records)


def _missing(row: dict | None, time_limit_s: float) -> bool:
    return row is None or (row["status"] == "timeout" and row["seconds"] < time_limit_s)


def _record(records: Path, key: str, row: dict) -> None:
    records.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(str(records.resolve()).encode()).hexdigest()[:12]  # hash() differs per process
    lock_path = Path(tempfile.gettempdir()) / f"model_zoo_{digest}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = read_records(records)
        rows[key] = row
        atomic_write_yaml(records, {"rows": rows})


def read_records(path: Path) -> dict:
    return dict((read_yaml_mapping(path) or {}).get("rows") or {})


# ----------------------------------------------------------------------------- the doc
DOC_HEAD = """# Model compatibility: torchvision classifiers through structured pruning

Generated by `uv run python -m scripts.model_zoo_check` from {records}; do not edit by hand.
Any of these names works as `model.name` (see README, "Your own model"). Each cell: the model
built for 10 classes at that input size, channel-pruned by this project's structured round (l2,
global, round_to 8) to a 30% MACs reduction (within 1 pt), forward-checked, saved and reloaded
weights-only (state dict + structure, no pickle), exported to ONNX (opset 17) and run in ONNX
Runtime (max difference at most 1e-4 x the largest logit). "ok" means every step passed; the
figures are the MACs reduction reached and the cell's wall time (on a shared machine, so it can
exceed the CPU-time limit below). Otherwise the cell gives the failing step and the reason.
At 32 px ResNet-family and MobileNetV2/V3 models get the CIFAR stem (tools.modeling.stems); all others keep
their ImageNet stem, so their feature maps shrink 32x and some cannot run at 32 px at all.
Each cell ran on one thread of a shared 2-core CPU, with a limit of {limit} of CPU time per cell;
"timeout" means it needed more than that (the model may still work with more time).
MACs are counted for one image; FLOPs = 2 x MACs.

| model | params | 32 px | 224 px |
|---|---:|---|---|
"""


def _cell(row: dict | None) -> str:
    if row is None:
        return "not run yet"
    if row["status"] == "ok":
        return f"ok (-{row['macs_reduction_pct']:.1f}% MACs, {row['seconds']:g} s)"
    where = f"{row['step']}: " if row.get("step") else ""
    reason = str(row.get("reason", "")).replace("|", "/")
    if len(reason) > 160:
        reason = reason[:157] + "..."
    return f"{row['status']}: {where}{reason}"


def write_doc(rows: dict, names: list[str], *, doc: Path, records: Path, time_limit_s: float) -> None:
    lines = [DOC_HEAD.format(records=records, limit=f"{time_limit_s:g} s")]
    ok = {size: 0 for size in SIZES}
    for name in names:
        cells = {size: rows.get(row_key(name, size)) for size in SIZES}
        params = next((c["params"] for c in cells.values() if c and c.get("params")), None)
        lines.append(
            f"| {name} | {f'{params / 1e6:.1f} M' if params else '-'} | {_cell(cells[32])} | {_cell(cells[224])} |\n"
        )
        for size, cell in cells.items():
            ok[size] += bool(cell and cell["status"] == "ok")
    lines.append(f"\n{ok[32]} of {len(names)} models pass at 32 px, {ok[224]} at 224 px.\n")
    atomic_write_text(doc, "".join(lines))


def model_zoo_check(args) -> None:
    """scripts.model_zoo_check's whole command: `args` as its parse_args returns them."""
    sizes = parse_list(args.sizes, int, "--sizes", "32,224")
    names = parse_list(args.models, str, "--models", "squeezenet1_1,regnet_x_400mf") or list(torchvision_names())
    unknown = [n for n in names if n not in torchvision_names()]
    if unknown:
        raise UserError(
            f"--models names {', '.join(unknown)}, not torchvision classifiers; see "
            "torchvision.models.list_models(module=torchvision.models)"
        )
    records, doc = Path(args.records), Path(args.doc)
    rows = (
        read_records(records)
        if args.doc_only
        else run_zoo(
            names,
            sizes,
            records=records,
            time_limit_s=args.time_limit,
            max_params=int(args.max_params),
            force=args.force,
        )
    )
    write_doc(
        rows,
        list(torchvision_names()) if args.models is None else names,
        doc=doc,
        records=records,
        time_limit_s=args.time_limit,
    )
    print(f"wrote {doc}")
