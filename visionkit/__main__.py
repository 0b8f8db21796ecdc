"""``python -m visionkit <job> ...``: the ``visionkit`` command where its script is not on PATH."""

from visionkit.cli.main import main

main()
