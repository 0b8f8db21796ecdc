"""Necks: modules between a backbone's levels and the heads (feature pyramids)."""

from visionkit.models.necks.fpn import FPN

__all__ = ["FPN"]
