"""``ensure_offline()`` leaves ``OMP_NUM_THREADS`` as the caller had it, for child processes too.

Each case runs in a fresh interpreter: ultralytics is already imported in the test process.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHILD = "import os; print(repr(os.environ.get('OMP_NUM_THREADS')))"
PARENT = f"""
import os, subprocess, sys
from yolofleet.offline import ensure_offline
ensure_offline()
print(repr(os.environ.get("OMP_NUM_THREADS")))
child = subprocess.run(
    [sys.executable, "-c", {CHILD!r}], capture_output=True, text=True, check=True
)
print(child.stdout.strip())
"""


@pytest.mark.parametrize("before", [None, "3", ""], ids=["unset", "set", "empty"])
def test_children_see_the_thread_setting_the_parent_had_before(before: str | None) -> None:
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    if before is not None:
        env["OMP_NUM_THREADS"] = before

    parent = subprocess.run(
        [sys.executable, "-c", PARENT], env=env, capture_output=True, text=True, timeout=120
    )

    assert parent.returncode == 0, parent.stderr
    assert parent.stdout.splitlines() == [repr(before), repr(before)]
