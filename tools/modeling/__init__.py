"""The model layer, beside tools/models.py (which keeps its path and only the model classes:
pickled models name them): where models come from (registry, sources, stems), loading weights
(weights), their shape description (structure), and their files: checkpoints, sparse storage,
ONNX/TorchScript export. May import tools.core, datasets and tools.models."""
