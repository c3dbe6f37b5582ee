"""`python -m sgnb ...`: the same command as the `sgnb` console script (pull, generate, bench, serve, export, run)."""

import sys

from sgnb.cli import main

sys.exit(main())
