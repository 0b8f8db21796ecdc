"""`visionkit plot` as a script: python tools/plot_logs.py --help."""

from visionkit.cli.plot import main
from visionkit.utils.cli import run_cli

if __name__ == "__main__":
    run_cli(main)
