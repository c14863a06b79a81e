"""``python -m deploy.local.stack COMMAND``: the same command line as ``deploy/local/stackctl.py``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
