"""`python -m daemon.cli`: the same entry point as the `specd` console script."""

from daemon.cli import importgc  # noqa: F401  first: the collector is paused while the CLI imports
from daemon.cli.main import main

raise SystemExit(main())
