"""Label conventions and class names shared by datasets, models and evaluators.

Class labels are int64 contiguous ``0..C-1`` (segmentation: ``0`` is the background). In a
``sem_seg`` label map ``(H, W)`` int64, :data:`IGNORE_LABEL` marks pixels that are neither
trained on nor scored (VOC's object outlines, crowds, padding).

The class names that more than the datasets know: Pascal VOC's 20 (:data:`VOC_CLASSES`, what
the VOC reader reads and torchvision's FCN weights predict) and their COCO category ids
(:data:`COCO_VOC_CAT_IDS`).
"""

IGNORE_LABEL = 255

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
# COCO category ids of VOC's 20 classes, in VOC order (torchvision's segmentation reference)
COCO_VOC_CAT_IDS = (5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72)
