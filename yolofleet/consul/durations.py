"""Go-style durations ("10s", "100ms", "1m30s"), the form Consul's HTTP API speaks.

Consul parses ``wait``, ``TTL`` and ``LockDelay`` with Go's ``time.ParseDuration``; both the dev
server and the client layer go through these two functions so they agree on the grammar.
"""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Parse a Go duration into seconds; raise ``ValueError`` on anything Go would refuse."""
    body = text[1:] if text[:1] in "+-" else text
    negative = text.startswith("-")
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    position = 0
    while position < len(body):
        match = _PART.match(body, position)
        if match is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return -total if negative else total


def format_duration(seconds: float) -> str:
    """Render seconds as a duration Go parses: whole seconds as ``"10s"``, the rest in ms."""
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"duration must be a finite number >= 0, got {seconds!r}")
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    millis = round(seconds * 1000)
    return f"{millis}ms" if millis else f"{round(seconds * 1e6)}us"
