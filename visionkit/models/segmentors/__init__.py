"""Semantic segmentation models, one file per architecture with its ``build_*`` function."""
