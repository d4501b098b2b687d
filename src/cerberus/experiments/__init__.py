"""The paper's analyses (ablations, sensitivity, silhouette) and the demo run."""
