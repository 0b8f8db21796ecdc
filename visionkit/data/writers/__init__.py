"""Dataset writers: any box dataset visionkit reads, written as COCO, Pascal VOC or YOLO
(``visionkit convert``; ``convert.py``), one module per format."""

from visionkit.data.writers.convert import (
    FORMATS,
    ConvertReport,
    convert_datasets,
    count_lines,
    orientation_problem,
)

__all__ = ["FORMATS", "ConvertReport", "convert_datasets", "count_lines", "orientation_problem"]
