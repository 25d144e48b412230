"""``python -m attnfaith``: the ``attnfaith`` command line (see :mod:`attnfaith.cli`)."""

import sys

from attnfaith.cli import main

if __name__ == "__main__":
    sys.exit(main())
