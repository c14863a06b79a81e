#!/usr/bin/env python3
"""``python deploy/local/stackctl.py COMMAND``: provision, start, check and stop the local stack.

The code is the package next to this file, ``deploy/local/stack/`` (its ``__init__`` says what each
module holds); ``python -m deploy.local.stack COMMAND`` is the same command line."""

import sys
from pathlib import Path

if not __package__:  # run as a script: the repository root makes `deploy` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from deploy.local.stack.cli import main

if __name__ == "__main__":
    sys.exit(main())
