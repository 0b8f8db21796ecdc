"""torchvision's COCO-trained detector and segmenters as visionkit models: an explicit key map.

``visionkit/configs/faster_rcnn_r50_fpn_coco.yaml``, ``mask_rcnn_r50_fpn_coco.yaml`` and
``fcn_resnet{50,101}_coco.yaml`` rebuild torchvision's ``fasterrcnn_resnet50_fpn``,
``maskrcnn_resnet50_fpn``, ``fcn_resnet50`` and ``fcn_resnet101`` layer for layer
(``tests/test_torchvision_weights.py``, ``tests/test_mask_rcnn.py`` check that they give the
same outputs). Their state dicts differ only in names and in the R-CNNs' class layout, which
:func:`convert_state_dict` maps by the prefix tables below: every torchvision key is renamed by
the first rule whose prefix it starts with, or dropped by a listed prefix; a key neither rule
names is an error (never a guess by shape or order).

Faster (and Mask) R-CNN's classes: torchvision has 91 label slots, 0 the background and ``i`` in
1..90 the COCO category id ``i`` (ten ids COCO leaves unused are "N/A" slots); visionkit's head
keeps the background last, so label ``l`` in ``0..89`` is COCO id ``l + 1``, and the class rows
roll by one (``cls_score``) or lose the background's four (``bbox_pred``) or its mask (the mask
predictor). FCN's 21 classes are the same in both: background, then VOC's 20 (COCO ids
:data:`~visionkit.structures.labels.COCO_VOC_CAT_IDS`).

BatchNorm's ``num_batches_tracked`` counters are not converted: they only count training steps
(visionkit's BatchNorms use a fixed momentum, and Faster R-CNN's frozen ones have none), so a file
saved from a model with plain BatchNorm converts as one saved with frozen BatchNorm. The FCN's
BatchNorms get 0, as from the published files, which do not store them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlparse

import torch
from torch import Tensor

from visionkit.errors import CheckpointError
from visionkit.structures.labels import COCO_VOC_CAT_IDS, VOC_CLASSES

PREFIX = "torchvision:"
TRACKED = "num_batches_tracked"  # BatchNorm's step counter: not converted (see the module)

RESNET_TRUNK = [
    ("conv1.", "stages.res2.0."),
    ("bn1.", "stages.res2.1."),
    ("layer1.", "stages.res2.4."),
    ("layer2.", "stages.res3."),
    ("layer3.", "stages.res4."),
    ("layer4.", "stages.res5."),
]

FASTER_RCNN_RULES = [
    *[(f"backbone.body.{a}", f"backbone.{b}") for a, b in RESNET_TRUNK],
    *[(f"backbone.fpn.inner_blocks.{i}.0.", f"neck.lateral.{i}.") for i in range(4)],
    *[(f"backbone.fpn.layer_blocks.{i}.0.", f"neck.output.{i}.") for i in range(4)],
    ("rpn.head.conv.0.0.", "proposer.head.conv."),  # torchvision >= 0.13
    ("rpn.head.conv.", "proposer.head.conv."),  # older files (the published COCO weights)
    ("rpn.head.cls_logits.", "proposer.head.objectness."),
    ("rpn.head.bbox_pred.", "proposer.head.deltas."),
    ("roi_heads.box_head.fc6.", "roi_heads.box_head.layers.1."),
    ("roi_heads.box_head.fc7.", "roi_heads.box_head.layers.4."),
    ("roi_heads.box_predictor.cls_score.", "roi_heads.cls_score."),
    ("roi_heads.box_predictor.bbox_pred.", "roi_heads.bbox_pred."),
]

MASK_RCNN_RULES = [
    *FASTER_RCNN_RULES,
    # four 3x3 convs: torchvision >= 0.13 ({i}.0.), and the published COCO file (mask_fcn{i + 1}.)
    *[(f"roi_heads.mask_head.{i}.0.", f"roi_heads.mask_head.convs.{2 * i}.") for i in range(4)],
    *[
        (f"roi_heads.mask_head.mask_fcn{i + 1}.", f"roi_heads.mask_head.convs.{2 * i}.")
        for i in range(4)
    ],
    ("roi_heads.mask_predictor.conv5_mask.", "roi_heads.mask_head.deconv."),
    ("roi_heads.mask_predictor.mask_fcn_logits.", "roi_heads.mask_head.predictor."),
]

FCN_RULES = [
    *[(f"backbone.{a}", f"backbone.{b}") for a, b in RESNET_TRUNK],
    ("classifier.0.", "head.layers.0."),  # 3x3 conv, no bias
    ("classifier.1.", "head.layers.1."),  # BatchNorm
    ("classifier.4.", "head.score."),  # 1x1 conv to the classes (2, 3: ReLU, dropout)
]
# torchvision's auxiliary FCNHead on layer3 serves its training loss only; visionkit's FCN has none
FCN_DROPPED = ("aux_classifier.",)


@dataclass(frozen=True)
class TorchvisionModel:
    """One torchvision model visionkit rebuilds.

    Attributes:
        model_name: the visionkit ``MODELS`` key its config builds.
        weights: torchvision's weights enum entry (``get_weight`` name), whose URL names the file.
        config: the visionkit config that rebuilds it.
        rules, dropped: the key map (see the module).
    """

    model_name: str
    weights: str
    config: str
    rules: list[tuple[str, str]]
    dropped: tuple[str, ...] = ()


TORCHVISION_MODELS = {
    "fasterrcnn_resnet50_fpn": TorchvisionModel(
        "faster_rcnn",
        "FasterRCNN_ResNet50_FPN_Weights.COCO_V1",
        "faster_rcnn_r50_fpn_coco",
        FASTER_RCNN_RULES,
    ),
    "maskrcnn_resnet50_fpn": TorchvisionModel(
        "mask_rcnn",
        "MaskRCNN_ResNet50_FPN_Weights.COCO_V1",
        "mask_rcnn_r50_fpn_coco",
        MASK_RCNN_RULES,
    ),
    "fcn_resnet50": TorchvisionModel(
        "fcn",
        "FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1",
        "fcn_resnet50_coco",
        FCN_RULES,
        FCN_DROPPED,
    ),
    "fcn_resnet101": TorchvisionModel(
        "fcn",
        "FCN_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1",
        "fcn_resnet101_coco",
        FCN_RULES,
        FCN_DROPPED,
    ),
}


def torchvision_model(name: str) -> TorchvisionModel:
    """The entry of ``name`` (e.g. ``fasterrcnn_resnet50_fpn``); another name is a one-line
    CheckpointError listing the known ones."""
    if name not in TORCHVISION_MODELS:
        raise CheckpointError(
            f"unknown torchvision model '{name}'; visionkit rebuilds "
            f"{', '.join(TORCHVISION_MODELS)}"
        )
    return TORCHVISION_MODELS[name]


def weights_url(name: str) -> tuple[str, str]:
    """``(url, file name)`` of ``name``'s weights, from torchvision's weights enum (the file
    name is the one ``torch.hub`` stores under ``<torch.hub.get_dir()>/checkpoints``)."""
    import torchvision

    url = torchvision.models.get_weight(torchvision_model(name).weights).url
    return url, PurePosixPath(urlparse(url).path).name


def class_metadata(name: str) -> tuple[list[str], list[int]]:
    """``(class_names, cat_ids)`` of visionkit's labels ``0..C-1`` for ``name``'s weights: COCO's
    names and ids (torchvision's unused slots named "N/A"), or FCN's background + VOC classes."""
    if torchvision_model(name).model_name == "fcn":
        return ["background", *VOC_CLASSES], [0, *COCO_VOC_CAT_IDS]
    import torchvision

    categories = torchvision.models.get_weight(torchvision_model(name).weights).meta["categories"]
    return list(categories[1:]), list(range(1, len(categories)))


def _rename(key: str, entry: TorchvisionModel, name: str) -> str | None:
    if key.startswith(entry.dropped):
        return None
    for theirs, ours in entry.rules:
        if key.startswith(theirs):
            return ours + key.removeprefix(theirs)
    raise CheckpointError(f"key '{key}' is not part of torchvision's {name} (no rule maps it)")


def convert_state_dict(name: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision ``name``'s state dict -> the state dict of the visionkit model its config
    builds (same tensors, renamed; Faster R-CNN's background row moved last in ``cls_score``,
    its four deltas dropped from ``bbox_pred`` and Mask R-CNN's mask dropped from the mask
    predictor; BatchNorm's ``num_batches_tracked`` ignored, and
    the FCN's set to 0: see the module)."""
    entry = torchvision_model(name)
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        ours = _rename(key, entry, name)
        if ours is None or ours.endswith(f".{TRACKED}"):
            continue
        if ours.startswith("roi_heads.cls_score."):
            value = torch.cat([value[1:], value[:1]])
        elif ours.startswith("roi_heads.bbox_pred."):
            value = value[4:]
        elif ours.startswith("roi_heads.mask_head.predictor."):
            value = value[1:]  # one mask per class: the background's dropped
        out[ours] = value
    if entry.model_name == "fcn":
        for key in [k for k in out if k.endswith(".running_mean")]:
            out[key.replace(".running_mean", f".{TRACKED}")] = torch.tensor(0)
    return out
