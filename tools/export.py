"""`visionkit export` as a script: python tools/export.py --help."""

from visionkit.cli.export import main
from visionkit.utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
