"""`visionkit visualize` as a script: python tools/visualize.py --help."""

from visionkit.cli.visualize import main
from visionkit.utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
