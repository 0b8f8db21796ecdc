"""`visionkit predict` as a script: python tools/infer.py --help."""

from visionkit.cli.predict import main
from visionkit.utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
