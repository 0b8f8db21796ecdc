"""Region proposals that come from outside the network: given with the images, or selective search.

Fast R-CNN, SPPNet and R-CNN classify regions they do not propose themselves. Training takes the
proposals precomputed once per dataset (``data.*.proposals``: each target's ``proposals``); at
test time ``predict(images, proposals=...)`` takes them too, and an image without them gets
visionkit's selective search here (the algorithm: ``visionkit/proposals/``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from visionkit.errors import DataError
from visionkit.io.image import image_to_uint8
from visionkit.models.preprocess import ImageBatch
from visionkit.models.proposers.base import ALL_PROPOSALS, Proposer
from visionkit.proposals.selective_search import selective_search


class GivenProposals(Proposer):
    """Each image's proposals, best first, at most ``max_proposals`` (no parameters).

    Args:
        search_mode: selective search's mode (``single``, ``fast``, ``quality``) for images
            without proposals.
        max_proposals: proposals used per image, best first (0 = all).
    """

    predict_extras = ("proposals",)

    def __init__(self, search_mode: str = "fast", max_proposals: int = 2000) -> None:
        super().__init__()
        self.search_mode, self.max_proposals = search_mode, int(max_proposals)

    def extra_repr(self) -> str:
        return f"search_mode={self.search_mode!r}, max_proposals={self.max_proposals}"

    def search(self, image: Tensor) -> Tensor:
        """Selective search on one ``(3, H, W)`` float RGB image in ``[0, 1]`` -> ``(K, 4)``
        float32 xyxy in its pixels, best first, at most ``max_proposals``."""
        pixels = image_to_uint8(image)
        boxes = selective_search(pixels.permute(1, 2, 0).cpu().numpy(), self.search_mode)
        return torch.from_numpy(boxes[: self.max_proposals or None]).to(image.device)

    def forward(
        self, images: Sequence[Tensor] | Tensor, proposals: Sequence[Tensor] | None
    ) -> list[Tensor]:
        """Per image ``(K_i, 4)`` xyxy in its original pixels, at most ``max_proposals``: the
        given ``proposals`` (one per image, best first), or :meth:`search` of each image."""
        if proposals is None:
            return [self.search(img) for img in images]
        if len(proposals) != len(images):
            raise ValueError(f"{len(proposals)} proposal sets for {len(images)} images")
        return [torch.as_tensor(p).reshape(-1, 4)[: self.max_proposals or None] for p in proposals]

    def propose(
        self,
        batch: ImageBatch,
        features: Sequence[Tensor],
        targets: Sequence[dict] | None = None,
        proposals: Sequence[Tensor] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """:class:`Proposer.propose`: in training each target's ``proposals`` (a target without
        them is a one-line DataError), at test time ``proposals`` or :meth:`search` of each of
        ``batch.images``; scaled to input pixels and clipped (:meth:`ImageBatch.clip_to_input`).
        No losses; ``features`` are not used."""
        if targets is not None:
            if any("proposals" not in t for t in targets):
                raise DataError(
                    "this model trains on precomputed proposals: set data.train.proposals.method "
                    "to selective_search or file"
                )
            proposals = [t["proposals"] for t in targets]
        return batch.clip_to_input(self(batch.images, proposals)), {}

    def rois(self, features: Sequence[Tensor], image_sizes: Tensor) -> Tensor:
        """Given regions are not found in features: ValueError (pass ``rois``)."""
        raise ValueError("this detector classifies given regions: pass rois (R, 5)")

    def regions_per_image(self) -> int:
        """``max_proposals``, or :data:`ALL_PROPOSALS` where it keeps all (0)."""
        return self.max_proposals or ALL_PROPOSALS
