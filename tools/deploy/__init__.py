"""Deployment: static INT8 quantization of ONNX files and quantization-aware fine-tuning. Same
layer as tools.pruning; may import training and everything below."""
