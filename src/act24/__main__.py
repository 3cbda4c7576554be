"""`python -m act24 ...`: the same entry point as the `act24` command."""
import sys

from .cli import main

sys.exit(main())
