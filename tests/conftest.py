"""Marks tests by folder (unit / integration / gpu) and keeps ultralytics offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from yolofleet.offline import ensure_offline

ensure_offline()

_MARKS = {"unit": pytest.mark.unit, "integration": pytest.mark.integration, "gpu": pytest.mark.gpu}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for folder, mark in _MARKS.items():
            if folder in parts:
                item.add_marker(mark)
