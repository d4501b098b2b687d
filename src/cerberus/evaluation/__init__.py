"""Benchmarks and their figures: protocols, metrics, calibration, explanations (method §6)."""
