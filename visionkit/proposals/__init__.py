"""Region proposals computed before detection: selective search, the per-dataset cache, datasets
whose targets carry them (Fast R-CNN, SPPNet)."""
