"""The network, its losses and its optimiser groups (method §2, §3)."""
