"""`visionkit convert-checkpoint` as a script: python tools/convert_checkpoint.py --help."""

from visionkit.cli.convert_checkpoint import main
from visionkit.utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
