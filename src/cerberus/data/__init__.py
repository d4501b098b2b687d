"""Datasets, the synthetic benchmark, samplers and transforms (SPEC sections 1, 4, 6)."""
