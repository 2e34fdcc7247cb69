"""`ctl`, the operator's command line (``python -m control_plane.ctl`` or the ``ctl`` script)."""

from control_plane.ctl.cli import main

__all__ = ["main"]
