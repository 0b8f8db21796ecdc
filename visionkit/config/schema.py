"""Typed config sections. Every YAML key maps onto one field here; anything else is an error.

The tree is ``Config(model, data, train, eval)``. Field comments give units and allowed values.
Every number (int, float, or a list of them) is declared with :func:`num`, which gives its range
(visionkit/config/validate.py refuses a value outside it at load, and refuses at import a
numeric field declared without one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

MAX_SIDE = 16384  # px: image, input, crop and anchor sides
MAX_WIDTH = 65536  # channels of a layer
MAX_BATCH = 4096  # images (or regions) per process in one forward
MAX_COUNT = 1_000_000  # epochs, iterations, proposals, detections, images
MAX_WEIGHT = 1e4  # loss weights, SVM margins, smooth L1 betas


@dataclass(frozen=True)
class Range:
    """``[lo, hi]``, without ``lo`` where ``open`` is ``"lo"`` and without ``hi`` where ``"hi"``."""

    lo: float
    hi: float
    open: Literal["", "lo", "hi"] = ""

    def __contains__(self, value: float) -> bool:
        above = value > self.lo if self.open == "lo" else value >= self.lo
        below = value < self.hi if self.open == "hi" else value <= self.hi
        return above and below

    def __str__(self) -> str:
        left, right = "(" if self.open == "lo" else "[", ")" if self.open == "hi" else "]"
        return f"{left}{_number(self.lo)}, {_number(self.hi)}{right}"


def _number(x: float) -> str:
    """``x`` exactly, without a trailing ``.0`` (``1000000``, not ``1e+06``)."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def num(
    default: float | Callable[[], list[Any]],
    lo: float,
    hi: float,
    open: Literal["", "lo", "hi"] = "",
) -> Any:
    """A numeric dataclass field: ``default`` (a number, or a factory of a list of numbers) whose
    value (every number of a list) must lie in :class:`Range` ``(lo, hi, open)``."""
    kind = {"default_factory": default} if callable(default) else {"default": default}
    return field(**kind, metadata={"range": Range(lo, hi, open)})


@dataclass
class BackboneConfig:
    name: str = "resnet18"  # a key of visionkit.models.backbones.BACKBONES
    # False: random init; True: torchvision ImageNet weights (downloaded); a path: a local file
    # holding the torchvision model's state_dict (or the backbone's own).
    pretrained: bool | str = False
    # how many of the first levels get no gradient (0 = train all)
    freeze_stages: int = num(0, 0, 16)
    out_features: list[str] = field(default_factory=list)  # levels to return; [] = the deepest
    # 8 or 16: ResNet's last strides become dilations (torchvision's replace_stride_with_dilation)
    output_stride: int = num(32, 8, 32)
    # True: every BatchNorm becomes torchvision's FrozenBatchNorm2d (fixed statistics and affine,
    # buffers only: no gradient, no update in training), as in torchvision's detection backbones
    frozen_bn: bool = False
    # the frozen BatchNorms' eps (torchvision's COCO fasterrcnn_resnet50_fpn weights: 0.0)
    frozen_bn_eps: float = num(1e-5, 0.0, 1.0)


@dataclass
class YoloConfig:
    grid_size: int = num(7, 1, 128)  # S
    boxes_per_cell: int = num(2, 1, 32)  # B
    head: Literal["fc", "conv"] = "fc"  # paper: 4 conv + 2 FC ("fc"); "conv": 1x1 conv output
    extra_convs: int = num(4, 0, 32)  # 3x3 convs between backbone and output (paper: 4)
    head_channels: int = num(1024, 1, MAX_WIDTH)
    hidden_dim: int = num(4096, 1, MAX_WIDTH)  # the first FC layer's width (paper: 4096)
    dropout: float = num(0.5, 0.0, 1.0, open="hi")
    lambda_coord: float = num(5.0, 0.0, MAX_WEIGHT)
    lambda_noobj: float = num(0.5, 0.0, MAX_WEIGHT)
    score_thresh: float = num(0.01, 0.0, 1.0)  # on class-specific confidence, at test time
    nms_thresh: float = num(0.5, 0.0, 1.0, open="lo")
    max_detections: int = num(100, 1, MAX_COUNT)  # per image


@dataclass
class ResizeConfig:
    # How a model sizes its input (two-stage detectors; YOLO always stretches to input_size).
    # "fixed": stretch every image to model.input_size; "shorter_side": keep the aspect ratio,
    # shorter side to min_size unless the longer side would exceed max_size (Faster R-CNN).
    mode: Literal["fixed", "shorter_side"] = "shorter_side"
    min_size: int = num(600, 1, MAX_SIDE)  # px (paper: 600)
    max_size: int = num(1000, 1, MAX_SIDE)  # px (paper: 1000)
    size_divisibility: int = num(32, 1, 1024)  # the padded batch's sides are multiples of this
    # shorter_side's resized sides: "round" (side * scale rounded) or "floor" (torchvision's
    # GeneralizedRCNNTransform: floor(side * scale) in double precision)
    rounding: Literal["round", "floor"] = "round"


@dataclass
class FPNConfig:
    # A feature pyramid on all of model.backbone.out_features (e.g. [res2, res3, res4, res5]);
    # model.anchors.sizes then takes one list per pyramid level (paper: [[32], [64], [128],
    # [256], [512]] for P2-P6).
    enabled: bool = False
    out_channels: int = num(256, 1, MAX_WIDTH)  # width of every pyramid level
    extra_pool: bool = True  # P6 = P5 subsampled by 2, for the RPN only (paper)
    # px; an RoI of this size is pooled from P_{canonical_level}
    canonical_size: float = num(224.0, 0.0, MAX_SIDE, open="lo")
    canonical_level: int = num(4, 0, 16)
    # where the level rule's epsilon goes: "in_log" floor(k0 + log2(s / 224 + 1e-6));
    # "after_log" floor(k0 + log2(s / 224) + 1e-6) (torchvision's LevelMapper)
    level_eps: Literal["in_log", "after_log"] = "in_log"


@dataclass
class AnchorConfig:
    # Per feature level, the square roots of the anchor areas in network-input pixels
    # (paper: one level, 128^2, 256^2, 512^2 at stride 16).
    sizes: list[list[float]] = num(lambda: [[128.0, 256.0, 512.0]], 0.0, MAX_SIDE, open="lo")
    aspect_ratios: list[float] = num(lambda: [0.5, 1.0, 2.0], 0.0, 1000.0, open="lo")  # h / w
    # "centered": exact sizes, cell (i, j) centred at ((j + 0.5) s, (i + 0.5) s); "torchvision":
    # torchvision's AnchorGenerator: sizes rounded to whole pixels, centred at (j s, i s), with s
    # per level = padded batch side // feature map side (P6 of an odd P5: not 64)
    layout: Literal["centered", "torchvision"] = "centered"


@dataclass
class RPNConfig:
    # the 3x3 conv's width (paper: 256 for ZF, 512 for VGG-16)
    conv_channels: int = num(512, 1, MAX_WIDTH)
    # anchors at IoU >= this with a box are positives ...
    pos_iou_thresh: float = num(0.7, 0.0, 1.0)
    neg_iou_thresh: float = num(0.3, 0.0, 1.0)  # ... below this negatives; between: ignored
    allow_low_quality_matches: bool = True  # the anchor(s) of highest IoU with each box: positive
    batch_size_per_image: int = num(256, 1, MAX_COUNT)  # anchors sampled per image for the loss
    positive_fraction: float = num(0.5, 0.0, 1.0, open="lo")  # at most 1:1 positives:negatives
    ignore_cross_boundary: bool = True  # training ignores anchors crossing the image border
    # proposals kept before NMS, per image and level
    pre_nms_top_n_train: int = num(12000, 1, MAX_COUNT)
    post_nms_top_n_train: int = num(2000, 1, MAX_COUNT)  # proposals kept after NMS, per image
    pre_nms_top_n_test: int = num(6000, 1, MAX_COUNT)
    post_nms_top_n_test: int = num(300, 1, MAX_COUNT)  # paper: 300 proposals at test time
    nms_thresh: float = num(0.7, 0.0, 1.0, open="lo")
    # px in the network input; smaller proposals are removed (0: empty)
    min_size: float = num(0.0, 0.0, MAX_SIDE)
    # rank proposals for NMS by sigmoid(objectness) (torchvision) instead of the logits: the
    # same order but where float32 sigmoids saturate to equal values (ties)
    sigmoid_scores: bool = False
    smooth_l1_beta: float = num(0.1111, 0.0, MAX_WEIGHT)  # 1/9 (py-faster-rcnn sigma 3); 0 = L1
    # lambda, with both terms averaged over the sampled anchors
    box_loss_weight: float = num(1.0, 0.0, MAX_WEIGHT)


@dataclass
class RoIHeadConfig:
    # "fc": RoI pooling on the backbone's level, then two FC layers (VGG-16 fc6/fc7);
    # "res5": the backbone's next stage (ResNet res5) then global average pooling (C4 head).
    box_head: Literal["fc", "res5"] = "fc"
    pooler: Literal["roi_pool", "roi_align", "spp"] = "roi_pool"
    # k of the k x k RoI output (res5 head: 14, halved by res5's stride)
    pool_size: int = num(7, 1, 64)
    sampling_ratio: int = num(0, 0, 64)  # roi_align sampling points per bin side (0 = adaptive)
    # roi_align: box corners shifted by half a pixel (Detectron2's ROIAlignV2); false: no shift
    # (torchvision's MultiScaleRoIAlign)
    aligned: bool = True
    spp_levels: list[int] = num(lambda: [1, 2, 3, 6], 1, 64)  # spp bins per side
    fc_dim: int = num(4096, 1, MAX_WIDTH)  # width of each FC layer (paper, VGG-16: 4096)
    dropout: float = num(0.5, 0.0, 1.0, open="hi")  # after each FC layer, as in VGG-16 (0 = none)
    # RoIs sampled per image (py-faster-rcnn: 128)
    batch_size_per_image: int = num(128, 1, MAX_COUNT)
    # foreground share of the sampled RoIs
    positive_fraction: float = num(0.25, 0.0, 1.0, open="lo")
    fg_iou_thresh: float = num(0.5, 0.0, 1.0)  # foreground: IoU >= 0.5 with a box
    # background: IoU in [lo, fg_iou_thresh); below: ignored
    bg_iou_thresh_lo: float = num(0.1, 0.0, 1.0)
    box_coder_weights: list[float] = num(lambda: [10.0, 10.0, 5.0, 5.0], 0.0, MAX_WEIGHT, open="lo")
    smooth_l1_beta: float = num(1.0, 0.0, MAX_WEIGHT)  # Fast R-CNN's smooth L1; 0 = L1
    score_thresh: float = num(0.05, 0.0, 1.0)  # on per-class softmax scores, at test time
    nms_thresh: float = num(0.3, 0.0, 1.0, open="lo")  # per-class NMS at test time (paper: 0.3)
    max_detections: int = num(100, 1, MAX_COUNT)  # per image
    # fast_rcnn / sppnet: only the layers after RoI pooling learn, the backbone is frozen
    # (SPPNet's fine-tuning; needs a pretrained backbone)
    freeze_backbone: bool = False


@dataclass
class MaskHeadConfig:
    # mask_rcnn: the paper's FPN mask head on each RoI: RoIAlign pool_size x pool_size from the
    # RoI head's levels (its level rule; model.roi_head.aligned), num_convs 3x3 convs of
    # conv_channels + ReLU, a 2x2 stride-2 transposed conv + ReLU and a 1x1 conv to one mask per
    # class of 2 * pool_size square (paper, torchvision: 14, 2, 4, 256: 28 x 28 masks)
    pool_size: int = num(14, 1, 64)
    sampling_ratio: int = num(2, 0, 64)  # RoIAlign sampling points per bin side (0 = adaptive)
    num_convs: int = num(4, 0, 16)
    conv_channels: int = num(256, 1, MAX_WIDTH)


@dataclass
class SelectiveSearchConfig:
    # fast_rcnn / sppnet: the proposals predict() computes for images that come without them
    mode: Literal["single", "fast", "quality"] = "fast"  # visionkit/proposals/selective_search.py
    max_proposals: int = num(2000, 0, MAX_COUNT)  # per image, best ranked first (0 = all)


@dataclass
class SVMConfig:
    # rcnn: per-class linear SVMs on the fine-tuned CNN's fc7 features (visionkit train-svms;
    # visionkit/models/heads/svm.py). Hinge loss + 0.5 ||w||^2, full-batch LBFGS in torch.
    # weight of the summed hinge losses (paper: 1e-3)
    C: float = num(0.001, 0.0, MAX_WEIGHT, open="lo")
    pos_weight: float = num(2.0, 0.0, MAX_WEIGHT, open="lo")  # positives' hinge weight (paper: 2)
    # negatives: proposals at IoU < this with every box of the class
    neg_iou_thresh: float = num(0.3, 0.0, 1.0)
    # rounds of: mine hard negatives from the cache, retrain
    hard_negative_rounds: int = num(3, 0, 100)
    # negatives scoring above this violate the margin: kept
    hard_thresh: float = num(-1.0001, -MAX_WEIGHT, MAX_WEIGHT)
    # kept negatives scoring below this are dropped (paper)
    evict_thresh: float = num(-1.2, -MAX_WEIGHT, MAX_WEIGHT)
    max_negatives: int = num(20000, 1, MAX_COUNT)  # per class and round, the highest-scoring first
    # features scaled to this mean L2 norm (paper: 20)
    feature_norm: float = num(20.0, 0.0, MAX_WEIGHT, open="lo")
    max_iter: int = num(300, 1, MAX_COUNT)  # LBFGS iterations per round
    # per training image whose features are cached (0 = all)
    max_proposals: int = num(2000, 0, MAX_COUNT)
    score_thresh: float = num(-1.0, -MAX_WEIGHT, MAX_WEIGHT)  # on SVM scores (margins) at test time
    cache_dir: str = ""  # "" = <$VISIONKIT_CACHE or ~/.cache/visionkit>/rcnn_features


@dataclass
class RCNNConfig:
    # rcnn: each proposal, dilated by context_pad px of the warped frame, warped (anisotropic
    # RoIAlign) to warp_size x warp_size from the image at its own size; the backbone's deepest
    # level average-pooled to pool_size x pool_size ("pool5"), then fc6/fc7 of fc_dim. Test-time
    # post-processing (score_thresh, nms_thresh, max_detections), box_coder_weights and
    # smooth_l1_beta come from model.roi_head.
    warp_size: int = num(227, 1, MAX_SIDE)  # paper: 227 (224 also common)
    # px of context around the box in the warped frame (paper: 16)
    context_pad: int = num(16, 0, MAX_SIDE)
    # 1 = global pooling; AlexNet's pool5 at 227: 6 (fc6 sees 256 x 6 x 6)
    pool_size: int = num(1, 1, 64)
    fc_dim: int = num(4096, 1, MAX_WIDTH)  # width of fc6 and fc7 (paper: 4096)
    dropout: float = num(0.5, 0.0, 1.0, open="hi")
    # fine-tuning mini-batch over all images of a batch: 32 positives ...
    fg_per_batch: int = num(32, 0, MAX_BATCH)
    bg_per_batch: int = num(96, 0, MAX_BATCH)  # ... and 96 background windows (paper: 128 in all)
    # fine-tuning positives: IoU >= this with a box; else background
    fg_iou_thresh: float = num(0.5, 0.0, 1.0)
    # box regression on the sampled windows at IoU >= this
    box_iou_thresh: float = num(0.6, 0.0, 1.0)
    # warped regions per CNN forward at test time and for the SVM features
    chunk_size: int = num(256, 1, MAX_BATCH)
    svm: SVMConfig = field(default_factory=SVMConfig)


@dataclass
class FCNConfig:
    # 32s: the deepest level's score upsampled once; 16s: fused with a score of the level at half
    # its stride (VGG: pool4); 8s: and of the level at a quarter (pool3)
    variant: Literal["32s", "16s", "8s"] = "8s"
    # fc: the paper's fc6/fc7 as convs (7x7 then 1x1, head_channels wide, ReLU + dropout);
    # conv: torchvision's FCNHead (3x3 conv, BatchNorm, ReLU, dropout)
    head: Literal["fc", "conv"] = "fc"
    head_channels: int = num(4096, 1, MAX_WIDTH)
    dropout: float = num(0.5, 0.0, 1.0, open="hi")
    # paper (VGG): 100, the first conv's zero padding that lets fc6's 7x7 run valid on any input;
    # 0: fc6 is padded ("same")
    input_pad: int = num(0, 0, 1024)
    learn_final_upsample: bool = False  # paper: the last upsampling stays bilinear
    # true: the last upsampling resizes the scores bilinearly to the input's size, with no
    # alignment crop (torchvision's FCN); false: by the stride, cropped as the geometry says
    final_resize: bool = False


@dataclass
class ModelConfig:
    name: str = "yolo_v1"  # a key of visionkit.models.MODELS
    num_classes: int = num(20, 1, 100_000)
    # [height, width]; segmentation models also take [] (native size, fully convolutional)
    input_size: list[int] = num(lambda: [448, 448], 1, MAX_SIDE)
    # Images enter models as float RGB in [0, 1]; the model normalizes with these.
    pixel_mean: list[float] = num(lambda: [0.485, 0.456, 0.406], 0.0, 1.0)
    pixel_std: list[float] = num(lambda: [0.229, 0.224, 0.225], 0.0, 1.0, open="lo")
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    yolo: YoloConfig = field(default_factory=YoloConfig)
    fcn: FCNConfig = field(default_factory=FCNConfig)
    # Two-stage detectors (faster_rcnn):
    resize: ResizeConfig = field(default_factory=ResizeConfig)
    fpn: FPNConfig = field(default_factory=FPNConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_head: RoIHeadConfig = field(default_factory=RoIHeadConfig)
    mask_head: MaskHeadConfig = field(default_factory=MaskHeadConfig)  # mask_rcnn
    selective_search: SelectiveSearchConfig = field(default_factory=SelectiveSearchConfig)
    rcnn: RCNNConfig = field(default_factory=RCNNConfig)
    # fine-tuning: a checkpoint (or state_dict) whose tensors of matching name and shape
    # initialize the model before training; the others (e.g. another number of classes'
    # classifier) keep their initialization. "" = none (visionkit train --init-from)
    init_weights: str = ""


@dataclass
class ProposalConfig:
    # Precomputed region proposals attached to every target as `proposals` (fast_rcnn, sppnet;
    # visionkit/data/proposal_dataset.py). none: no proposals; selective_search: computed once
    # per dataset, cached on disk and reused; file: a user's .npz/.pt, image_id -> (N, 4) xyxy
    # in original pixels (format: visionkit/data/proposal_cache.py).
    method: Literal["none", "selective_search", "file"] = "none"
    file: str = ""  # method file
    mode: Literal["single", "fast", "quality"] = "fast"  # selective search strategies
    max_proposals: int = num(2000, 0, MAX_COUNT)  # per image, best ranked first (0 = all)
    cache_dir: str = ""  # "" = <$VISIONKIT_CACHE or ~/.cache/visionkit>/proposals
    workers: int = num(1, 1, 256)  # processes computing selective search the first time


@dataclass
class DatasetConfig:
    type: Literal["shapes", "coco", "voc", "yolo"] = "shapes"
    # coco: the image folder; voc: the VOCdevkit folder; yolo: the data.yaml (or its folder);
    # shapes: the cache folder ("" = $VISIONKIT_CACHE or ~/.cache/visionkit).
    root: str = ""
    ann_file: str = ""  # coco: the instances JSON
    # voc: "<year>/<split>" entries, concatenated, e.g. ["2007/trainval", "2012/trainval"];
    # yolo: keys of the data.yaml (train, val, test), concatenated; shapes: "train" or "val".
    splits: list[str] = field(default_factory=lambda: ["train"])
    filter_empty: bool = False  # drop images without annotations (coco/yolo/shapes)
    use_difficult: bool = False  # voc: keep `difficult` objects in training targets
    # voc: the class names in label order ([] = Pascal VOC's 20); coco and yolo files name theirs
    class_names: list[str] = field(default_factory=list)
    num_images: int = num(0, 0, MAX_COUNT)  # shapes: how many images (0 = the split's default)
    image_size: int = num(0, 0, MAX_SIDE)  # shapes: square side in pixels (0 = default)
    # coco, sem_seg only: keep VOC's 20 categories (torchvision's reference), the rest background
    coco_to_voc: bool = False
    proposals: ProposalConfig = field(default_factory=ProposalConfig)  # fast_rcnn / sppnet


@dataclass
class AugmentConfig:
    hflip: float = num(0.5, 0.0, 1.0)  # probability
    scale: float = num(0.2, 0.0, 1.0, open="hi")  # random scaling up to +-20 % (YOLO paper)
    translate: float = num(0.2, 0.0, 1.0)  # random translation up to +-20 % of the image size
    exposure: float = num(1.5, 1.0, 10.0)  # HSV value factor range [1/x, x] (YOLO paper: 1.5)
    saturation: float = num(1.5, 1.0, 10.0)  # HSV saturation factor range [1/x, x]
    hue: float = num(0.0, 0.0, 0.5)  # hue shift as a fraction of the hue circle
    letterbox: bool = False  # keep aspect ratio and pad instead of stretching
    # [lo, hi] factors; replaces `scale`
    scale_range: list[float] = num(list, 0.0, 100.0, open="lo")
    # [height, width]: rescale (scale_range), pad (image grey, mask 255) and random-crop to it
    crop_size: list[int] = num(list, 1, MAX_SIDE)


@dataclass
class DataConfig:
    train: DatasetConfig = field(default_factory=DatasetConfig)
    val: DatasetConfig = field(default_factory=lambda: DatasetConfig(splits=["val"]))
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    batch_size: int = num(16, 1, MAX_BATCH)  # per process
    num_workers: int = num(2, 0, 256)
    # a missing, truncated or undecodable image: skip: replaced by the next readable sample (one
    # warning line per file; evaluation leaves it out); stop: a one-line error naming the file
    on_bad_image: Literal["skip", "stop"] = "skip"


@dataclass
class TrainConfig:
    epochs: int = num(12, 1, MAX_COUNT)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = num(0.01, 0.0, 10.0, open="lo")
    momentum: float = num(0.9, 0.0, 1.0, open="hi")
    weight_decay: float = num(5e-4, 0.0, 1.0)
    scheduler: Literal["step", "cosine", "poly", "constant"] = "step"
    # poly: lr * (1 - iteration / total) ** poly_power
    poly_power: float = num(0.9, 0.0, 100.0, open="lo")
    milestones: list[float] = num(list, 0.0, MAX_COUNT, open="lo")  # step: epochs where lr *= gamma
    gamma: float = num(0.1, 0.0, 1.0, open="lo")
    warmup_epochs: float = num(0.0, 0.0, MAX_COUNT)  # linear warmup from warmup_factor * lr
    warmup_factor: float = num(0.1, 0.0, 1.0, open="lo")
    clip_grad_norm: float = num(0.0, 0.0, 1e6)  # 0 = no clipping
    # autocast: bf16 on CUDA and CPU; fp16 (with a gradient scaler) on CUDA only; auto: bf16
    # where the device computes it natively (CUDA compute capability >= 8.0, a CPU with
    # AVX512-BF16 or AMX), else none (float32); the run's first lines say which and why
    amp: Literal["auto", "none", "fp16", "bf16"] = "auto"
    # NHWC weights and activations: ~30 % faster convolutions on CPU (oneDNN) and on tensor cores
    channels_last: bool = True
    seed: int = num(0, 0, 2**32 - 1)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_every: int = num(1, 0, MAX_COUNT)  # epochs; 0 = only at the end
    # "<task>/<name>" from the evaluator, higher is better (bbox/AP50, sem_seg/mIoU)
    best_metric: str = "bbox/AP50"
    log_every: int = num(20, 1, MAX_COUNT)  # iterations between JSONL/TensorBoard scalar writes
    output_dir: str = ""  # "" = runs/<config file name>
    # Several processes under torchrun (docs/distributed.md); data.batch_size stays per process.
    dist_backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: nccl on CUDA, gloo on CPU
    sync_bn: bool = False  # BatchNorm statistics over all processes' batches (CUDA only)
    find_unused_parameters: bool = False  # DDP: for models whose loss leaves parameters unused
    # micro-batches whose gradients make one optimizer step
    accumulate_steps: int = num(1, 1, MAX_BATCH)
    # "none": lr as written; "linear" (Goyal et al. 2017): lr * world_size * accumulate_steps *
    # data.batch_size / base_batch_size, i.e. lr grows with the total batch of one step
    lr_scaling: Literal["none", "linear"] = "none"
    # the total batch train.lr was chosen for; 0 = data.batch_size
    base_batch_size: int = num(0, 0, MAX_COUNT)


@dataclass
class EvalConfig:
    batch_size: int = num(8, 1, MAX_BATCH)
    # COCOeval's implementation (visionkit/evaluation/coco_backends.py): faster-coco-eval (C++,
    # pycocotools' numbers, several times faster; pycocotools if it is not installed) or
    # pycocotools (the reference); visionkit eval --coco-backend sets it
    coco_backend: Literal["faster-coco-eval", "pycocotools"] = "faster-coco-eval"
    # the detection confusion matrix of the plots (visionkit eval --plots, a run's plots/):
    # detections scoring at least this count (a display threshold, not the metrics'); visionkit
    # eval --conf-thresh sets it
    confusion_score_thresh: float = num(0.25, 0.0, 1.0)
    # ... matched to an object at IoU >= this (visionkit eval --conf-iou)
    confusion_iou_thresh: float = num(0.5, 0.0, 1.0, open="lo")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
