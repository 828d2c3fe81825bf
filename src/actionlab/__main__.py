"""``python -m actionlab``: the same as the ``actionlab`` command."""

import sys

from actionlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
