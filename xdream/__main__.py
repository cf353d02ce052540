"""``python -m xdream``: the same as the ``xdream`` command."""

import sys

from xdream.main import main

sys.exit(main())
