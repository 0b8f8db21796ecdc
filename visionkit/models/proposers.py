"""Region proposals that come from outside the network: given with the images, or selective search.

Fast R-CNN, SPPNet and R-CNN classify regions they do not propose themselves. Training takes the
proposals precomputed once per dataset (``data.*.proposals``: each target's ``proposals``); at
test time ``predict(images, proposals=...)`` takes them too, and an image without them gets
visionkit's selective search here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from visionkit.errors import DataError
from visionkit.io.image import image_to_uint8
from visionkit.proposals.selective_search import selective_search


class GivenProposals:
    """Each image's proposals, best first, at most ``max_proposals``.

    Args:
        search_mode: selective search's mode (``single``, ``fast``, ``quality``) for images
            without proposals.
        max_proposals: proposals used per image, best first (0 = all).
    """

    def __init__(self, search_mode: str = "fast", max_proposals: int = 2000) -> None:
        self.search_mode, self.max_proposals = search_mode, int(max_proposals)

    def search(self, image: Tensor) -> Tensor:
        """Selective search on one ``(3, H, W)`` float RGB image in ``[0, 1]`` -> ``(K, 4)``
        float32 xyxy in its pixels, best first, at most ``max_proposals``."""
        pixels = image_to_uint8(image)
        boxes = selective_search(pixels.permute(1, 2, 0).cpu().numpy(), self.search_mode)
        return torch.from_numpy(boxes[: self.max_proposals or None]).to(image.device)

    def __call__(
        self, images: Sequence[Tensor], proposals: Sequence[Tensor] | None
    ) -> list[Tensor]:
        """Per image ``(K_i, 4)`` xyxy in its original pixels, at most ``max_proposals``: the
        given ``proposals`` (one per image, best first), or :meth:`search` of each image."""
        if proposals is None:
            return [self.search(img) for img in images]
        if len(proposals) != len(images):
            raise ValueError(f"{len(proposals)} proposal sets for {len(images)} images")
        return [torch.as_tensor(p).reshape(-1, 4)[: self.max_proposals or None] for p in proposals]

    def of_targets(self, images: Sequence[Tensor], targets: Sequence[dict]) -> list[Tensor]:
        """Training: each target's ``proposals`` (precomputed once per dataset), as
        :meth:`__call__` gives them; a target without them is a one-line DataError."""
        if any("proposals" not in t for t in targets):
            raise DataError(
                "this model trains on precomputed proposals: set data.train.proposals.method to "
                "selective_search or file"
            )
        return self(images, [t["proposals"] for t in targets])
