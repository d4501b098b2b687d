"""The training loop, checkpoints and weights files (method §4)."""
