"""`visionkit eval` as a script: python tools/eval.py --help."""

from visionkit.cli.eval import main
from visionkit.utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
