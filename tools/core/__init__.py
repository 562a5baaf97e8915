"""Layer 0, core: errors, atomic file I/O, the config schema and its loading, argument parsing,
run folders, fingerprints and lineage, device set-up, plots, offline checks, distributed set-up.
Imports nothing else from the project (see docs/architecture.md)."""
