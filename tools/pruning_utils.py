"""Pruning algorithms: one import point for the unstructured (mask-based) and structured
(dependency-graph) parts, which live in tools.unstructured and tools.structured.

    from tools import pruning_utils as pu
"""

from tools.unstructured import *  # noqa: E402,F401,F403  (mask-based: l1, global, random, taylor, movement, lamp, nm)
from tools.structured import *  # noqa: E402,F401,F403  (dependency-graph channels: l1, l2, bn_scale, taylor, lamp, fpgm, random; MACs targets; goal check; kernel/intra_kernel masks)
