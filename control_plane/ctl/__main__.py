"""``python -m control_plane.ctl``."""

import sys

from control_plane.ctl.cli import main

sys.exit(main())
