"""Fast R-CNN (Girshick, 2015): the Fast R-CNN head over precomputed region proposals.

One backbone level (VGG-16 ``conv5``: stride 16) is computed once per image; each proposal is
pooled from it (RoI max pooling 7 x 7, or SPPNet's pyramid: ``sppnet.py``), passed through the box
head and classified (``C + 1``) and regressed (``4C``) by :class:`RoIHeads`. Training is
image-centric: each mini-batch holds few images (paper: 2) with many RoIs each (64, 25 %
foreground at IoU >= 0.5, background in ``[0.1, 0.5)``), sampled from the proposals plus the
ground truth.

Proposals come with the targets (``target["proposals"]``, ``(K, 4)`` xyxy in the image tensor's
pixels: ``data.*.proposals``, ``data/proposal_dataset.py``) or, at test time, as ``predict``'s
``proposals`` argument; without them ``predict`` runs visionkit's selective search on each image
(:class:`~visionkit.models.proposers.GivenProposals`, its
:class:`~visionkit.models.detectors.two_stage.TwoStageDetector`'s proposer).
"""

from __future__ import annotations

from visionkit.config.schema import ModelConfig
from visionkit.models.detectors.two_stage import TwoStageDetector, build_given_proposal_detector


def build_fast_rcnn(cfg: ModelConfig) -> TwoStageDetector:
    """Turn a model config into Fast R-CNN: a :class:`TwoStageDetector` with given proposals on
    one backbone level, RoI max pooling (``model.roi_head.pooler``) by default."""
    return build_given_proposal_detector(cfg)
