"""What each pruning / quantization script does end to end, one module per script, named like it
(runs.prune_structured is scripts.prune_structured's body). May import algorithms and below."""
