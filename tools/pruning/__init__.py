"""Pruning algorithms: unstructured masks, N:M, sensitivity, structured channels on
torch-pruning's graph, kernel granularities, pruning at initialisation, latency targets. Same layer
as tools.deploy; may import training and everything below."""
