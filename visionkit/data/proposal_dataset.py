"""A detection dataset whose targets also carry precomputed proposals (Fast R-CNN, SPPNet).

:class:`ProposalDataset` wraps a :class:`~visionkit.data.coco.CocoDetection` or
:class:`~visionkit.data.voc.VOCDetection` and takes over its transforms: each sample's proposals
(original pixels) go through the same albumentations pipeline as the ground truth, as extra boxes
with the label -1, and come out as the target's ``proposals`` ``(K, 4)`` float32 xyxy in the
image tensor's pixels (clipped; those less than 30 % visible after a crop or translation are
dropped with the boxes' rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from visionkit.config.schema import ProposalConfig
from visionkit.data.coco import to_sample
from visionkit.data.packed import PackedMapping
from visionkit.data.proposal_cache import dataset_proposals
from visionkit.io.image import image_to_uint8
from visionkit.structures.boxes import clip_boxes, valid_boxes_mask

PROPOSAL_LABEL = -1


class ProposalDataset(Dataset):
    """``dataset``'s samples with ``target["proposals"]`` added.

    Args:
        dataset: has ``ids``, ``transforms``, ``coco``, ``cat_ids``, ``class_names`` and
            ``image_path(i)``; its samples (untransformed) are read through it.
        proposals: ``image_id -> (N, 4)`` xyxy in original pixels, best first; kept packed
            (:attr:`proposals`, a :class:`~visionkit.data.packed.PackedMapping` that loader
            workers share).
        max_proposals: keep the first ones per image (0 = all).
    """

    def __init__(
        self, dataset: Any, proposals: Mapping[int, np.ndarray], max_proposals: int = 0
    ) -> None:
        self.dataset, self.max_proposals = dataset, max_proposals
        self.proposals = PackedMapping(proposals, np.float32, (4,))
        self.transforms, dataset.transforms = dataset.transforms, None
        self.ids, self.cat_ids, self.class_names = dataset.ids, dataset.cat_ids, dataset.class_names

    @property
    def coco(self) -> Any:
        """The wrapped dataset's ground truth (built on first use)."""
        return self.dataset.coco

    def __len__(self) -> int:
        return len(self.dataset)

    def image_path(self, index: int) -> Any:
        return self.dataset.image_path(index)

    def orientation(self, index: int) -> bool:
        return self.dataset.orientation(index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image, target = self.dataset[index]
        h, w = image.shape[-2:]
        props = torch.as_tensor(self.proposals.get(target["image_id"], np.zeros((0, 4))))
        props = clip_boxes(props.float().reshape(-1, 4), (h, w))
        props = props[valid_boxes_mask(props, 1e-2)]
        if self.max_proposals > 0:
            props = props[: self.max_proposals]
        pixels = image_to_uint8(image).permute(1, 2, 0).numpy()
        boxes = torch.cat([target["boxes"], props]).numpy()
        labels = np.concatenate([target["labels"].numpy(), np.full(len(props), PROPOSAL_LABEL)])
        tensor, out = to_sample(pixels, boxes, labels, target["image_id"], self.transforms)
        is_gt = out["labels"] != PROPOSAL_LABEL
        out["proposals"] = out["boxes"][~is_gt]
        out["boxes"], out["labels"] = out["boxes"][is_gt], out["labels"][is_gt]
        return tensor, out


def with_proposals(dataset: Any, cfg: ProposalConfig, on_bad_image: str = "skip") -> Any:
    """``dataset`` unchanged for ``cfg.method == "none"``, else a :class:`ProposalDataset` over
    the proposals :func:`~visionkit.data.proposal_cache.dataset_proposals` gives."""
    if cfg.method == "none":
        return dataset
    proposals = dataset_proposals(dataset, cfg, on_bad_image=on_bad_image)
    return ProposalDataset(dataset, proposals, cfg.max_proposals)
