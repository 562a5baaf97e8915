"""Measuring models: MACs/params/sparsity (metrics), latency, what eval reports on a model
(describe), profiles, profiler traces, the MobileNetV2 lab's counter. May import the core and model
layers."""
