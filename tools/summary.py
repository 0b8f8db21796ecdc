"""`visionkit summary` as a script: python tools/summary.py --help."""

from visionkit.cli.summary import main
from visionkit.utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
