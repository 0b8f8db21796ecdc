"""`visionkit browse` as a script: python tools/browse_dataset.py --help."""

from visionkit.cli.browse import main
from visionkit.utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
