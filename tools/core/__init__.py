"""Layer 0, core: errors, atomic file I/O, config loading with its type and range checks (each
section's schema lives in the layer that reads it), argument parsing, run folders, fingerprints
and lineage, device set-up, plots, offline checks, distributed set-up. Imports nothing else from
the project (see docs/architecture.md)."""
