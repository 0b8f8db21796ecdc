"""Convert a config's datasets to COCO, Pascal VOC or YOLO (``visionkit convert``)."""

from visionkit.cli.convert import main
from visionkit.utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
