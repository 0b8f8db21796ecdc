"""What every command-line tool shares: argument parsing conventions and one-line errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from visionkit.errors import VisionkitError


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's examples as written and shows defaults."""


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run ``main``; user errors become one line on stderr and a non-zero exit, no traceback."""
    try:
        code = main(argv)
    except VisionkitError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
