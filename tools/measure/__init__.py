"""Measuring models: MACs/params/sparsity (metrics), latency, profiles, profiler traces, the
MobileNetV2 lab's counter. May import the core and model layers."""
