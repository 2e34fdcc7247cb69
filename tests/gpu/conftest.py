"""CUDA tests for a GPU runner: real models on ``cuda:0``. Without a CUDA device all are skipped.

The integration fixtures (demo models, their refs, per-test nodes) are reused from
``tests/integration/conftest.py``; the nodes here ask for ``device="cuda:0"``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.integration.conftest import models, refs, start_node

__all__ = ["models", "refs", "start_node"]

NO_CUDA = "needs a CUDA device: torch.cuda.is_available() is False on this machine"
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip every test in this folder before its fixtures (model training, nodes) run."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=NO_CUDA)
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(skip)
