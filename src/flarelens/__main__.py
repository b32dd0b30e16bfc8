"""``python -m flarelens`` (and ``torchrun -m flarelens``) run the command-line interface."""

import sys

from flarelens.cli import main

if __name__ == "__main__":
    sys.exit(main())
