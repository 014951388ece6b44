"""`python -m apqopt ...` is the `apqopt` command (e.g. under torchrun, or without the console script)."""

from apqopt.cli import main

raise SystemExit(main())
