from __future__ import annotations

import pytest

from inference_node.errors import (
    ArtifactError,
    ArtifactRefused,
    DigestMismatch,
    LoadCancelled,
    LoadError,
    Superseded,
    SwapError,
    ValidationFailed,
)
from inference_node.swapping.fetch_limits import CopyPhase, FetchLimits, ProgressView, broken_limit

LIMITS = FetchLimits(connect_s=10.0, idle_s=30.0, deadline_s=900.0)
C, R = CopyPhase.CONNECTING, CopyPhase.RECEIVING


@pytest.mark.parametrize(
    ("phase", "last_byte_at", "now", "broken"),
    [
        pytest.param(C, 0.0, 9.9, None, id="connecting-in-time"),
        pytest.param(C, 0.0, 10.1, "connect timed out", id="connecting-too-long"),
        pytest.param(R, 10.0, 39.9, None, id="receiving-idle-under-limit"),
        pytest.param(R, 10.0, 40.1, "no data for 30s", id="receiving-idle-too-long"),
        pytest.param(R, 40.0, 60.0, None, id="connect-limit-no-longer-applies"),
        pytest.param(R, 899.0, 900.1, "deadline of 900s", id="trickle-hits-the-deadline"),
        pytest.param(C, 0.0, 900.1, "deadline of 900s", id="deadline-wins-over-connect"),
    ],
)
def test_broken_limit(
    phase: CopyPhase, last_byte_at: float, now: float, broken: str | None
) -> None:
    progress = ProgressView(phase=phase, started_at=0.0, last_byte_at=last_byte_at, received=1)

    found = broken_limit(progress, now=now, limits=LIMITS)

    if broken is None:
        assert found is None
    else:
        assert found is not None
        assert broken in found


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        pytest.param(ArtifactError("timed out"), True, id="fetch-failed"),
        pytest.param(ArtifactRefused("HTTP 404"), False, id="fetch-refused"),
        pytest.param(DigestMismatch("sha256"), False, id="digest-mismatch"),
        pytest.param(LoadError("corrupt"), False, id="corrupt-checkpoint"),
        pytest.param(ValidationFailed("slow", gate="latency"), True, id="latency-gate"),
        pytest.param(ValidationFailed("classes", gate="classes"), False, id="classes-gate"),
        pytest.param(Superseded("newer"), False, id="superseded"),
        pytest.param(LoadCancelled("stop"), False, id="cancelled"),
    ],
)
def test_every_swap_error_says_whether_a_retry_may_work(error: SwapError, transient: bool) -> None:
    assert error.transient is transient


def test_a_cancelled_load_is_a_kind_of_superseded_swap() -> None:
    assert issubclass(LoadCancelled, Superseded)


@pytest.mark.parametrize(
    "limits",
    [
        pytest.param({"connect_s": 0}, id="connect"),
        pytest.param({"idle_s": -1}, id="idle"),
        pytest.param({"deadline_s": 0}, id="deadline"),
        pytest.param({"max_bytes": 0}, id="size"),
    ],
)
def test_limits_must_be_positive(limits: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        FetchLimits(**limits)  # type: ignore[arg-type]
