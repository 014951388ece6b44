"""``python -m apqopt.cli``: what the ``apqopt`` script runs (workers started by a command use it)."""

import sys

from apqopt.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
