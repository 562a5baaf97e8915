"""The model layer, beside tools/models.py (which keeps its path: pickled models name it): where
models come from (sources), their shape description (structure), and their files: checkpoints,
sparse storage, ONNX/TorchScript export. May import tools.core, datasets and tools.models."""
