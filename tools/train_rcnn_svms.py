"""`visionkit train-svms` as a script: python tools/train_rcnn_svms.py --help."""

from visionkit.cli.train_svms import main
from visionkit.utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
