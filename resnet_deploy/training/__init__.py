"""Training: the paper's recipes, the deterministic resumable loop, its run directory and log."""
