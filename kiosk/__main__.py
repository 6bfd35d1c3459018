"""``python -m kiosk``: the ``kiosk`` command, for a shell that does not have it on its PATH."""

import sys

from kiosk.cli import main

sys.exit(main())
