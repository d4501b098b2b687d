"""A trained model at work: embeddings, scoring rules, feature files, export (method §5)."""
