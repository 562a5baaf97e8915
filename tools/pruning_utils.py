"""Pruning algorithms: one import point for the unstructured (mask-based) and structured
(dependency-graph) parts, which live in tools.unstructured and tools.structured.

    from tools import pruning_utils as pu
"""
