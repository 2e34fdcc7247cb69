from __future__ import annotations

from pathlib import Path

import pytest

from inference_node.errors import InvalidImage, Overloaded
from inference_node.serving.admission import (
    MEMORY_FRACTION,
    MIN_INFLIGHT_BYTES,
    Admission,
    AdmissionLimits,
    memory_limit_bytes,
)

MB = 1 << 20


def admission(
    *, max_waiting: int = 4, max_bytes: int = 100 * MB, max_rpcs: int = 8, max_streams: int = 4
) -> Admission:
    limits = AdmissionLimits(
        max_inflight_bytes=max_bytes, max_rpcs=max_rpcs, max_streams=max_streams
    )
    return Admission(limits, max_waiting=max_waiting)


def test_requests_are_counted_from_arrival_until_closed() -> None:
    counts = admission(max_waiting=2)
    first = counts.arrive(wire_bytes=10, running=0)
    second = counts.arrive(wire_bytes=10, running=0)

    with pytest.raises(Overloaded, match=r"queue is full \(2 waiting\)"):
        counts.arrive(wire_bytes=10, running=0)
    first.close()
    third = counts.arrive(wire_bytes=10, running=0)

    assert (counts.requests, counts.arriving, counts.bytes) == (2, 2, 20)
    second.close()
    third.close()
    assert (counts.requests, counts.arriving, counts.bytes) == (0, 0, 0)


def test_running_requests_do_not_count_as_waiting() -> None:
    counts = admission(max_waiting=1)
    running = counts.arrive(wire_bytes=0, running=0)
    running.submitted()

    waiting = counts.arrive(wire_bytes=0, running=1)

    assert counts.requests == 2
    with pytest.raises(Overloaded):
        counts.arrive(wire_bytes=0, running=1)
    running.close()
    waiting.close()


@pytest.mark.parametrize(
    ("held", "reserve", "error"),
    [
        pytest.param(0, 60 * MB, None, id="fits"),
        pytest.param(50 * MB, 60 * MB, Overloaded, id="over-while-others-hold-bytes"),
        pytest.param(0, 101 * MB, InvalidImage, id="more-than-the-whole-limit"),
    ],
)
def test_a_decode_reserves_its_peak_before_it_runs(
    held: int, reserve: int, error: type[Exception] | None
) -> None:
    counts = admission(max_bytes=100 * MB)
    other = counts.arrive(wire_bytes=held, running=0)
    ticket = counts.arrive(wire_bytes=0, running=0)

    if error is None:
        ticket.reserve(reserve)
        assert counts.bytes == held + reserve
    else:
        with pytest.raises(error):
            ticket.reserve(reserve)
        assert counts.bytes == held
    other.close()
    ticket.close()
    assert counts.bytes == 0


def test_wire_bytes_over_the_limit_are_refused_at_arrival() -> None:
    counts = admission(max_bytes=100)
    kept = counts.arrive(wire_bytes=80, running=0)

    with pytest.raises(Overloaded, match="hold 80 bytes; 30 more"):
        counts.arrive(wire_bytes=30, running=0)

    assert counts.requests == 1
    kept.close()


def test_settle_keeps_only_the_decoded_pixels() -> None:
    counts = admission()
    ticket = counts.arrive(wire_bytes=5, running=0)
    ticket.reserve(40 * MB)

    ticket.settle(3 * MB)

    assert counts.bytes == ticket.held_bytes == 5 + 3 * MB
    ticket.close()
    ticket.close()  # closing twice gives nothing back twice
    assert counts.bytes == 0


def test_close_calls_back_once() -> None:
    calls: list[str] = []
    ticket = admission().arrive(wire_bytes=0, running=0, on_close=lambda: calls.append("done"))

    with ticket:
        ticket.submitted()
    ticket.close()

    assert calls == ["done"]


@pytest.mark.parametrize(
    ("stream", "open_rpcs", "open_streams", "message"),
    [
        pytest.param(False, 2, 0, "too many inference calls open", id="rpc-cap"),
        pytest.param(True, 1, 1, "too many streams open", id="stream-cap"),
    ],
)
def test_rpcs_and_streams_are_capped(
    stream: bool, open_rpcs: int, open_streams: int, message: str
) -> None:
    counts = admission(max_rpcs=2, max_streams=1)
    held = [counts.rpc(stream=True) for _ in range(open_streams)]
    held += [counts.rpc() for _ in range(open_rpcs - open_streams)]
    for context in held:
        context.__enter__()

    with pytest.raises(Overloaded, match=message), counts.rpc(stream=stream):
        pass

    for context in held:
        context.__exit__(None, None, None)
    with counts.rpc(stream=stream):
        assert (counts.rpcs, counts.streams) == (1, int(stream))
    assert (counts.rpcs, counts.streams) == (0, 0)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param({"memory.max": "2147483648\n"}, 2 * 1024**3, id="cgroup-v2-limit"),
        pytest.param({"memory.max": "max\n"}, None, id="cgroup-v2-unlimited"),
        pytest.param(
            {"memory/memory.limit_in_bytes": "1073741824\n"}, 1024**3, id="cgroup-v1-limit"
        ),
        pytest.param(
            {"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None, id="cgroup-v1-none"
        ),
        pytest.param({}, None, id="no-cgroup"),
    ],
)
def test_memory_limit_is_the_cgroup_limit_else_physical_memory(
    tmp_path: Path, files: dict[str, str], expected: int | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    physical = memory_limit_bytes(tmp_path / "absent")

    assert memory_limit_bytes(tmp_path) == (expected if expected is not None else physical)


def test_default_inflight_bytes_is_a_fraction_of_the_memory_limit(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text(str(12 * 1024**3))

    resolved = AdmissionLimits().resolved(cgroup_root=tmp_path)
    (tmp_path / "memory.max").write_text(str(100 * MB))
    floor = AdmissionLimits().resolved(cgroup_root=tmp_path)

    assert resolved.max_inflight_bytes == 12 * 1024**3 // MEMORY_FRACTION
    assert floor.max_inflight_bytes == MIN_INFLIGHT_BYTES
    assert AdmissionLimits(max_inflight_bytes=5).resolved().max_inflight_bytes == 5
