"""SPPNet for detection (He et al., 2014): Fast R-CNN's pipeline with spatial pyramid pooling.

The convolutional features are computed once per image; each proposal's window on them is max-
pooled into ``l x l`` bins for every pyramid level (paper: 1, 2, 3, 6 -> 50 bins per channel),
concatenated into one fixed-length vector whatever the window's shape, and fed to fc6/fc7 and the
classifier/regressor (Fast R-CNN's
:class:`~visionkit.models.detectors.two_stage.TwoStageDetector` with the ``spp`` pooler). The paper
fine-tunes only the layers after pooling: ``model.roi_head.freeze_backbone``.
"""

from __future__ import annotations

from visionkit.config.schema import ModelConfig
from visionkit.errors import ConfigError
from visionkit.models.detectors.two_stage import TwoStageDetector, build_given_proposal_detector


def build_sppnet(cfg: ModelConfig) -> TwoStageDetector:
    """Fast R-CNN's :class:`TwoStageDetector` pooling with ``model.roi_head.spp_levels``; the
    config must say ``model.roi_head.pooler: spp``."""
    if cfg.roi_head.pooler != "spp":
        raise ConfigError(
            f"sppnet pools with a spatial pyramid: set model.roi_head.pooler to spp (it is "
            f"'{cfg.roi_head.pooler}'; fast_rcnn takes the other poolers)"
        )
    return build_given_proposal_detector(cfg)
