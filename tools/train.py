"""`visionkit train` as a script: python tools/train.py --help."""

from visionkit.cli.train import main
from visionkit.utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
