"""Label conventions shared by datasets, models and evaluators.

Class labels are int64 contiguous ``0..C-1`` (segmentation: ``0`` is the background). In a
``sem_seg`` label map ``(H, W)`` int64, :data:`IGNORE_LABEL` marks pixels that are neither
trained on nor scored (VOC's object outlines, crowds, padding).
"""

IGNORE_LABEL = 255
