"""``python -m captum_groups``: the ``captum-groups`` command (also under ``torchrun -m``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
