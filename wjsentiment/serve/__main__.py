"""``python -m wjsentiment.serve MODEL [options]``: ``wjsentiment serve`` on its own."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
