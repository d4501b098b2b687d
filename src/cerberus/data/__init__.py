"""Datasets, the synthetic benchmark, samplers and transforms (method §1, §4, §6)."""
