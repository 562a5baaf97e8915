"""Workflows that launch scripts: the pipeline, sweeps, the benchmark and its budget, the model
zoo check. The top layer of tools/; may import everything below."""
