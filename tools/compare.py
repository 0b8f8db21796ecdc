"""`visionkit compare` as a script: python tools/compare.py --help."""

from visionkit.cli.compare import main
from visionkit.utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
