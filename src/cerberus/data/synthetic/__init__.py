"""The built-in synthetic people: a benchmark dataset and footage (method §8, §9.3)."""
