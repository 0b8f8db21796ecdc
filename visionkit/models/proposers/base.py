"""Where a two-stage detector's regions come from: :class:`Proposer`, the one interface of the
Region Proposal Network (``rpn.py``, learned with the detector) and of proposals given with the
images or found by selective search (``given.py``).

A detector calls :meth:`Proposer.propose` in training and prediction, and :meth:`Proposer.rois`
where only tensors are at hand (its ``forward``, traced for ONNX).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from torch import Tensor, nn

from visionkit.models.preprocess import ImageBatch

# regions per image a summary counts for a proposer that keeps them all (max_proposals: 0)
ALL_PROPOSALS = 2000


class Proposer(nn.Module, ABC):
    """Each image's regions for a two-stage detector.

    Attributes:
        predict_extras: what the detector's ``predict`` takes for this proposer beside the
            images (``("proposals",)`` for given proposals; also the ONNX graph's extra input).
    """

    predict_extras: tuple[str, ...] = ()

    @abstractmethod
    def propose(
        self,
        batch: ImageBatch,
        features: Sequence[Tensor],
        targets: Sequence[dict] | None = None,
        proposals: Sequence[Tensor] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """The regions of a batch, in training (``targets``) or at test time.

        Args:
            batch: the preprocessed batch (the images as given, their sizes and scales).
            features: per level ``(N, C, H_l, W_l)``, fine first (given proposals ignore them).
            targets: training: per image its targets in original pixels (``boxes``, ``labels``;
                given proposals read ``proposals``, ``(K, 4)`` xyxy, best first). None at test
                time.
            proposals: test time: per image ``(K_i, 4)`` xyxy in its original pixels, best first
                (given proposals; None: selective search on each image). A proposer that
                proposes its own regions refuses them (ValueError).

        Returns:
            Per image ``(K_i, 4)`` float32 xyxy proposals in input (batch) pixels, inside the
            image, detached, best first; and the proposer's losses (the RPN's ``loss_rpn_cls``
            and ``loss_rpn_box`` in training; otherwise empty).
        """

    @abstractmethod
    def rois(self, features: Sequence[Tensor], image_sizes: Tensor) -> Tensor:
        """Test-time regions from the features alone, tensor operations only (the detector's
        ``forward``, the ONNX graph): ``(R, 5)`` float ``(image index, x1, y1, x2, y2)`` in input
        pixels, clipped to ``image_sizes`` ``(N, 2)`` ``(h, w)``. A proposer whose regions come
        from outside raises ValueError (the caller must pass them)."""

    @abstractmethod
    def regions_per_image(self) -> int:
        """At most how many regions per image it gives at test time (a summary's default)."""

    def summary_paths(self, features: Sequence[Tensor]) -> None:
        """Run its layers on ``features`` for a parameter and MAC count (none by default)."""
        return None
