"""The MobileNetV2 lab's grader (seed 003), run as the lab's own snippet runs it.

    uv run python -m scripts.eval --checkpoint mobilenet.pth --grader mobilenet-lab

    counted = count_like_the_lab(Path("mobilenet.pth"))       # {"macs", "params", "type"}, in a fresh process
    score_pct = lab_score(counted["macs"] / 1e6, accuracy=0.93)

The lab's snippet, in its own Python process: `model = torch.load("mobilenet.pth")` (the whole
pickled module; PyTorch >= 2.6 needs weights_only=False for that, so the grader passes it), then
`tp.utils.count_ops_and_params(model, torch.randn(1, 3, 224, 224))`, whose first number it calls
MFLOPs once divided by 1e6. That counter counts multiply-accumulates: the lab's "MFLOPs" are MMACs
(this project's FLOPs are 2 x MACs), and every line printed here says so. The score, in percent
of the course grade:

    ((200 - MFLOPs) / (200 - 45) - 10 * clamp(0.92 - accuracy, 0, 1)) * 45%

unclamped above and below, as the lab writes it: 45 MFLOPs at >= 92% accuracy scores 45%.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tools.core.errors import UserError

LAB_INPUT_SHAPE = (1, 3, 224, 224)
LAB_REFERENCE_MFLOPS = 200.0
LAB_TARGET_MFLOPS = 45.0
LAB_MIN_ACCURACY = 0.92
LAB_WEIGHT_PCT = 45.0

# The lab's snippet, verbatim apart from printing its two numbers as JSON.
_SNIPPET = """
import json, sys, torch, torch_pruning as tp
model = torch.load(sys.argv[1], weights_only=False)
if not isinstance(model, torch.nn.Module):
    print(json.dumps({"error": f"holds a {type(model).__name__}, not a whole module"}))
    sys.exit(0)
model.eval()
macs, params = tp.utils.count_ops_and_params(model, torch.randn(1, 3, 224, 224))
print(json.dumps({"macs": float(macs), "params": float(params), "type": type(model).__name__}))
"""


def lab_score(mflops: float, accuracy: float) -> float:
    """The lab's score in percent: `accuracy` is a fraction (0.92, not 92)."""
    penalty = 10 * min(max(LAB_MIN_ACCURACY - accuracy, 0.0), 1.0)
    return ((LAB_REFERENCE_MFLOPS - mflops) / (LAB_REFERENCE_MFLOPS - LAB_TARGET_MFLOPS) - penalty) * LAB_WEIGHT_PCT


# Classes a pickled model may name and still be read without running code from the file: torch's
# layers, torchvision's classifiers and this project's models (plain data in, a module out).
_KNOWN_MODULE_PREFIXES = ("torch.nn.modules.", "torchvision.models.", "torchvision.ops.misc", "tools.models")


def check_lab_may_unpickle(path: Path, trusted: bool) -> None:
    """UserError unless the user trusts `path` (--trust-checkpoint) or it is proven safe: it loads
    weights-only with only known module classes allowed. The lab's snippet unpickles the whole file
    (weights_only=False), which can run any code a hostile file carries."""
    if trusted or not Path(path).is_file() or _loads_without_code(Path(path)):
        return
    raise UserError(
        f"--grader mobilenet-lab loads {path} as the lab's snippet does, torch.load(weights_only=False) of "
        "the whole pickled module, which can run code from the file, and it names classes beyond torch, "
        "torchvision and this project's models; pass --trust-checkpoint if you trust its source"
    )


def _loads_without_code(path: Path) -> bool:
    import torch
    from torch import nn

    import tools.models  # noqa: F401 (its classes register as nn.Module subclasses)

    try:
        with torch.serialization.safe_globals(_known_module_classes(nn.Module)):
            torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 (any refusal or failure: not proven safe)
        return False
    return True


def _known_module_classes(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        if sub.__module__.startswith(_KNOWN_MODULE_PREFIXES):
            found.append(sub)
        found += _known_module_classes(sub)
    return found


def count_like_the_lab(path: Path) -> dict:
    """torch.load + torch-pruning's counter at 1x3x224x224 in a fresh interpreter, so a file
    that only loads inside this project's process (a class defined in a script, a lambda) fails
    here as it would for the lab."""
    if not Path(path).is_file():
        raise UserError(
            f"{path} not found; the lab grades mobilenet.pth, e.g. a copy of a prune run's pruned_model.pth"
        )
    done = subprocess.run(
        [sys.executable, "-c", _SNIPPET, str(Path(path).resolve())],
        capture_output=True,
        text=True,
        cwd=os.getcwd(),
        env=os.environ.copy(),
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(
            f"the lab's snippet cannot load and count {path} in a fresh process ({last}); save the whole "
            "module with torch.save(model, path) from importable classes (prune_structured's pruned_model.pth is one)"
        )
    counted = json.loads(lines[-1])
    if "error" in counted:
        raise UserError(
            f"{path} {counted['error']}: the lab torch.loads the module itself; pass a prune run's "
            "pruned_model.pth or save torch.save(model, 'mobilenet.pth')"
        )
    return counted


def format_grade(grade: dict) -> str:
    mflops, acc = grade["mflops"], grade["accuracy"]
    return "\n".join(
        [
            f"lab grader (mobilenet-lab): torch.load({grade['checkpoint']}, weights_only=False) in a fresh process -> "
            f"{grade['type']}",
            f"MFLOPs   {mflops:.2f}  (torch-pruning's count_ops_and_params at 1x3x224x224 / 1e6: it counts MACs, so these are "
            f"MMACs; this project's FLOPs would be {2 * mflops:.2f} M)",
            f"params   {grade['params'] / 1e6:.3f} M",
            f"accuracy {acc:.4f}  ({grade['num_samples']} test images at 224 px)",
            f"score    (({LAB_REFERENCE_MFLOPS:g} - {mflops:.2f}) / ({LAB_REFERENCE_MFLOPS:g} - {LAB_TARGET_MFLOPS:g}) - 10 * "
            f"clamp({LAB_MIN_ACCURACY:g} - {acc:.4f}, 0, 1)) * {LAB_WEIGHT_PCT:g}% = {grade['score_pct']:.2f}%",
        ]
    )
