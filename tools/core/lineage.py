"""Where a pruned model comes from: its original baseline and the chain of parents, carried in the model.

    from tools.core.lineage import child_lineage, versus
    figures = {"top1": 90.0, "macs": 1000, "params": 10}
    lineage = child_lineage(None, checkpoint="best_model.pth", figures=figures)  # [the baseline's entry]
    versus(lineage[0], {"top1": 88.5, "macs": 500, "params": 6})["accuracy_drop"]  # 1.5

A lineage is a list of entries, oldest first: lineage[0] is the original (unpruned) baseline and
lineage[-1] the immediate parent. Each entry names the checkpoint, its sha256 and the figures the
pruning run measured on it (test top-1, MACs, params, dense and non-zero). A pruned model carries the
lineage of its parent plus the parent itself: structured pruning's bare module as its `lineage`
attribute, unstructured pruning's checkpoint dict under the `lineage` key, so re-pruning a
pruned model is judged against the original baseline, not against the already-pruned parent.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from tools.core.fingerprint import file_sha256

LINEAGE = "lineage"  # the attribute of a pruned module / the key of a checkpoint dict
FIGURES = ("top1", "top5", "macs", "flops", "params", "nonzero_macs", "nonzero_flops", "nonzero_params")


def lineage_of(ckpt) -> list[dict]:
    """The lineage a loaded checkpoint carries ([] for a model that was never pruned by this project)."""
    found = (
        getattr(ckpt, LINEAGE, None)
        if isinstance(ckpt, nn.Module)
        else ckpt.get(LINEAGE)
        if isinstance(ckpt, dict)
        else None
    )
    if found is None and isinstance(ckpt, dict) and isinstance(ckpt.get("model"), nn.Module):
        found = getattr(ckpt["model"], LINEAGE, None)
    return [dict(e) for e in found] if isinstance(found, list) else []


def child_lineage(parent_ckpt, *, checkpoint: str | Path, figures: dict) -> list[dict]:
    """The lineage of a model pruned from `checkpoint` (loaded as `parent_ckpt`, measured as `figures`)."""
    entry = {
        "checkpoint": str(checkpoint),
        "sha256": file_sha256(checkpoint),
        **{k: figures[k] for k in FIGURES if k in figures},
    }
    return lineage_of(parent_ckpt) + [entry]


def versus(base: dict, final: dict, prefix: str = "") -> dict:
    """Drop (top-1 points) and MACs / FLOPs / params reductions (%) of `final` against `base`;
    `prefix` "nonzero_" compares non-zero counts (masks leave dense counts as they were)."""

    def pct(key: str) -> float | None:
        before, after = base.get(prefix + key), final.get(prefix + key)
        return 100.0 * (before - after) / before if before and after is not None else None

    macs = pct("macs")
    return {
        "checkpoint": base.get("checkpoint"),
        "baseline_top1": base["top1"],
        "accuracy_drop": base["top1"] - final["top1"],
        "macs_reduction_pct": macs,
        "flops_reduction_pct": macs,
        "params_reduction_pct": pct("params"),
    }
