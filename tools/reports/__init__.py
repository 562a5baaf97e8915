"""Reports and plots read from run folders: the run report, findings, comparison rows, sparsity
plots, the pruning-at-initialisation report. May import runs and below."""
