"""``quiet_openmp``: a short GNU OpenMP spin by default, and the operator's choice kept."""

from __future__ import annotations

import os

import pytest

from yolofleet.offline import OPENMP_SPIN_COUNT, quiet_openmp


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param({}, {"GOMP_SPINCOUNT": OPENMP_SPIN_COUNT}, id="unset-gets-the-short-spin"),
        pytest.param({"GOMP_SPINCOUNT": "0"}, {"GOMP_SPINCOUNT": "0"}, id="spin-count-kept"),
        pytest.param(
            {"OMP_WAIT_POLICY": "ACTIVE"},
            {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": None},
            id="wait-policy-kept-and-no-spin-count-added",
        ),
    ],
)
def test_quiet_openmp_defaults_the_spin_count_only_when_nothing_is_chosen(
    monkeypatch: pytest.MonkeyPatch, given: dict[str, str], expected: dict[str, str | None]
) -> None:
    for name in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in given.items():
        monkeypatch.setenv(name, value)

    quiet_openmp()

    assert {name: os.environ.get(name) for name in expected} == expected
