"""Fully convolutional networks (Long, Shelhamer & Darrell, 2015): FCN-32s, -16s and -8s.

On VGG-16 (``visionkit/configs/fcn*_vgg16_voc.yaml``) this is the paper's network: conv1_1 padded by 100,
fc6/fc7 as 7x7 and 1x1 convolutions (initialized from VGG's classifier when the backbone is
pretrained), a zero-initialized 1x1 score, bilinear-initialized transposed convolutions, pool4 and
pool3 skip scores zero-initialized, and the crops that make the output exactly the input's size.
On any other registered backbone the same head scores its deepest level and fuses the first
levels at half and a quarter of that stride (ResNet: res5, res4, res3; dilated: see
``model.backbone.output_stride``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.config.schema import BackboneConfig, ModelConfig
from visionkit.errors import CheckpointError, ConfigError
from visionkit.models.backbones import BACKBONES, build_backbone
from visionkit.models.backbones.base import Backbone
from visionkit.models.backbones.geometry import level_geometry
from visionkit.models.base import SEGMENTATION_OUTPUTS, BaseModel
from visionkit.models.heads.fcn_head import FCNHead
from visionkit.models.preprocess import Preprocessor, build_preprocessor
from visionkit.structures.labels import IGNORE_LABEL

NUM_LEVELS = {"32s": 1, "16s": 2, "8s": 3}


class FCN(BaseModel):
    """Backbone + :class:`FCNHead`; per-pixel cross-entropy and whole-image prediction.

    Args:
        backbone: returns the head's levels (``head.deep`` and its skips).
        head: levels -> class scores at the input's size.
        preprocess: resizes (optionally), normalizes and pads images into a batch whose sides
            are multiples of the deepest stride.
        num_classes: C, background (label 0) included.
    """

    task = "sem_seg"

    def __init__(
        self,
        backbone: Backbone,
        head: FCNHead,
        preprocess: Preprocessor,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.backbone, self.head, self.preprocess = backbone, head, preprocess
        self.num_classes = num_classes

    def forward(
        self, batch: Tensor, image_sizes: Tensor | None = None, rois: Tensor | None = None
    ) -> Tensor:
        """``(N, 3, H, W)`` normalized batch, any size -> ``(N, C, H, W)`` logits. ``image_sizes``
        and ``rois`` are not used (the padding is scored too; ``predict`` cuts it off)."""
        return self.head(self.backbone(batch), batch.shape[-2:])

    def loss(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict]) -> dict[str, Tensor]:
        """Per-pixel cross-entropy averaged over the labelled pixels of the batch.

        Args:
            images: float RGB in [0, 1], a ``(N, 3, H, W)`` tensor or ``(3, H_i, W_i)`` tensors.
            targets: per image ``sem_seg`` ``(H_i, W_i)`` int64, 255 = ignored.

        Returns:
            ``{"loss_fcn_ce": scalar}`` (0 with a gradient when no pixel is labelled).
        """
        batch = self.preprocess(images)
        logits = self(batch.tensor)
        target = batch.masks_to_input([t["sem_seg"] for t in targets])
        # float32 under autocast: a log-softmax summed over every pixel overflows float16
        ce = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_LABEL, reduction="sum")
        return {"loss_fcn_ce": ce / (target != IGNORE_LABEL).sum().clamp(min=1)}

    @torch.no_grad()
    def predict(
        self, images: Sequence[Tensor] | Tensor, return_logits: bool = False
    ) -> list[dict[str, Tensor]]:
        """Label every pixel.

        Returns per image ``sem_seg``: ``(H_i, W_i)`` int64 labels in ``0..C-1`` in the image's
        original pixels (logits resized bilinearly when the model resizes its inputs), and with
        ``return_logits`` also ``logits`` ``(C, H_i, W_i)`` float32.
        """
        batch = self.preprocess(images)
        logits = self(batch.tensor).float()  # float32 out of the model, whatever autocast ran
        results = batch.postprocess([{"logits": logits[i : i + 1]} for i in range(len(logits))])
        if not return_logits:
            for r in results:
                del r["logits"]
        return results

    def export_module(self) -> nn.Module:
        """:class:`FcnExport`: logits and their arg-max over the batch."""
        return FcnExport(self)


class FcnExport(nn.Module):
    """FCN's ONNX graph body: ``(batch, image_sizes)`` -> ``logits`` ``(B, C, H, W)`` float32 and
    ``sem_seg`` ``(B, H, W)`` int64, their arg-max, in input pixels (``image_sizes`` only masks
    the padding, in the normalization before)."""

    inputs = ("images", "image_sizes")
    outputs = SEGMENTATION_OUTPUTS

    def __init__(self, model: FCN) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Tensor, image_sizes: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(batch).float()
        return logits, logits.argmax(1)


def _choose_levels(backbone: Backbone, requested: Sequence[str], variant: str) -> list[str]:
    """The levels the head fuses, shallow to deep: ``model.backbone.out_features`` when given,
    else the deepest level and the first levels at half and a quarter of its stride."""
    n = NUM_LEVELS[variant]
    if requested:
        if len(backbone.out_features) != n:
            raise ConfigError(
                f"FCN-{variant} fuses {n} levels but model.backbone.out_features names "
                f"{len(backbone.out_features)}"
            )
        return list(backbone.out_features)
    names = list(backbone.levels)
    deep = names[-1]
    stride = backbone.levels[deep][1]
    chosen = [deep]
    for k in range(1, n):
        found = [m for m in names if backbone.levels[m][1] * 2**k == stride]
        if not found:
            raise ConfigError(
                f"FCN-{variant} needs a level at stride {stride / 2**k:g}; the backbone's levels "
                f"are {', '.join(f'{m} ({backbone.levels[m][1]})' for m in names)}"
            )
        chosen.insert(0, found[0])
    return chosen


def _pad_input(backbone: Backbone, pad: int) -> None:
    """The paper's (Caffe) geometry: the first layer, which must be a plain convolution, zero-pads
    by ``pad``, and max-pools round up, so that any input reaches fc6 with at least 7x7."""
    first = next(iter(backbone.stages.values()))
    while isinstance(first, nn.Sequential):
        first = first[0]
    if not isinstance(first, nn.Conv2d):
        raise ConfigError("model.fcn.input_pad needs a backbone that starts with a convolution")
    first.padding = (pad, pad)
    for m in backbone.modules():
        if isinstance(m, nn.MaxPool2d):
            m.ceil_mode = True


def _load_vgg_fc(head: FCNHead, cfg: BackboneConfig) -> None:
    """fc6/fc7 from torchvision's VGG classifier (Linear 25088->4096 and 4096->4096), reshaped to
    7x7 and 1x1 convolutions as the paper casts them."""
    if cfg.pretrained is True:
        import torchvision

        weights = f"{BACKBONES[cfg.name][1]}.DEFAULT"
        state = torchvision.models.get_weight(weights).get_state_dict(progress=True)
    else:
        try:
            state = torch.load(cfg.pretrained, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"cannot read {cfg.pretrained}: {type(e).__name__}") from None
    if "classifier.0.weight" not in state:
        return  # the backbone's own weights: no classifier to cast
    fc6, fc7 = head.layers[0], head.layers[3]
    with torch.no_grad():
        fc6.weight.copy_(state["classifier.0.weight"].view_as(fc6.weight))
        fc6.bias.copy_(state["classifier.0.bias"])
        fc7.weight.copy_(state["classifier.3.weight"].view_as(fc7.weight))
        fc7.bias.copy_(state["classifier.3.bias"])


def build_fcn(cfg: ModelConfig) -> FCN:
    """Turn a model config into an :class:`FCN` (``cfg.fcn`` and ``cfg.backbone``)."""
    return fcn_on_backbone(build_backbone(cfg.backbone), cfg)


def fcn_on_backbone(backbone: Backbone, cfg: ModelConfig) -> FCN:
    """An :class:`FCN` around an already built ``backbone`` (which it sets up: its returned
    levels and, with ``cfg.fcn.input_pad``, its padding and pooling)."""
    f = cfg.fcn
    names = _choose_levels(backbone, cfg.backbone.out_features, f.variant)
    backbone.set_out_features(names)
    backbone.drop_unused_stages()
    if f.input_pad:
        _pad_input(backbone, f.input_pad)
    geometry = level_geometry(backbone)
    head = FCNHead(
        [(n, backbone.levels[n][0], *geometry[n]) for n in names],
        cfg.num_classes,
        kind=f.head,
        channels=f.head_channels,
        dropout=f.dropout,
        valid_fc6=f.input_pad > 0,
        learn_final_upsample=f.learn_final_upsample,
        resize_to_input=f.final_resize,
    )
    vgg_fc = f.head == "fc" and f.head_channels == 4096 and cfg.backbone.name.startswith("vgg")
    if vgg_fc and cfg.backbone.pretrained:
        _load_vgg_fc(head, cfg.backbone)
    if len(cfg.input_size) not in (0, 2):
        raise ConfigError("model.input_size must be [height, width] or [] for FCN")
    resize = "fixed" if cfg.input_size else "none"
    preprocess = build_preprocessor(cfg, resize, size_divisor=geometry[names[-1]][0])
    return FCN(backbone, head, preprocess, cfg.num_classes)
