"""The ``visionkit`` command: one subcommand per job (``visionkit train``, ``eval``, ``predict``,
``export``, ...), each a module of this package with ``main(argv) -> exit code``.
``tools/*.py`` are two-line shells around the same functions."""
