"""Attributes, their schemas and tables, Lin et al. .mat files and semantic IDs (method §1)."""
