"""The device heartbeat, the pure stall verdict and the watchdog that reports its changes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from inference_node.telemetry.watchdog import (
    MIN_TIMEOUT_S,
    Beat,
    DeviceHeartbeat,
    Watchdog,
    WatchedExecutor,
    stall,
    timeout_for,
)


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("beat", "now", "stalled"),
    [
        pytest.param(Beat(busy_since=None, typical_job_s=0.01), 1e6, False, id="idle-never"),
        pytest.param(Beat(busy_since=10.0, typical_job_s=0.01), 14.9, False, id="within"),
        pytest.param(Beat(busy_since=10.0, typical_job_s=0.01), 15.0, False, id="at-the-limit"),
        pytest.param(Beat(busy_since=10.0, typical_job_s=0.01), 15.1, True, id="past-it"),
    ],
)
def test_stall_only_when_one_job_outlives_the_timeout(
    beat: Beat, now: float, stalled: bool
) -> None:
    reason = stall(beat, now=now, timeout_s=5.0)

    assert bool(reason) is stalled
    if stalled:
        assert reason == "device thread stalled: one job has run for 5.1s (watchdog timeout 5.0s)"


@pytest.mark.parametrize(
    ("typical_s", "configured_s", "timeout_s"),
    [
        pytest.param(0.0, None, MIN_TIMEOUT_S, id="nothing-measured-floor"),
        pytest.param(0.01, None, MIN_TIMEOUT_S, id="fast-model-floor"),
        pytest.param(0.25, None, 16.0, id="slow-model-four-full-batches"),
        pytest.param(0.25, 2.0, 2.0, id="configured-wins"),
    ],
)
def test_timeout_is_derived_from_batch_size_and_job_time(
    typical_s: float, configured_s: float | None, timeout_s: float
) -> None:
    beat = Beat(busy_since=None, typical_job_s=typical_s)

    assert timeout_for(beat, max_batch=16, configured_s=configured_s) == timeout_s


def test_heartbeat_shows_the_running_job_and_times_finished_ones() -> None:
    clock = FakeClock()
    heartbeat = DeviceHeartbeat(clock)
    seen: list[Beat] = []

    def job() -> str:
        seen.append(heartbeat.read())
        clock.now += 0.5
        return "done"

    result = heartbeat.wrap(job)()

    assert result == "done"
    assert seen == [Beat(busy_since=100.0, typical_job_s=0.0)]
    assert heartbeat.read() == Beat(busy_since=None, typical_job_s=0.5)


def test_heartbeat_ends_a_job_that_raises() -> None:
    heartbeat = DeviceHeartbeat(FakeClock())

    def job() -> None:
        raise RuntimeError("driver error")

    with pytest.raises(RuntimeError, match="driver error"):
        heartbeat.wrap(job)()

    assert heartbeat.read().busy_since is None


def test_watched_executor_stamps_jobs_on_its_thread() -> None:
    heartbeat = DeviceHeartbeat()
    executor = WatchedExecutor(ThreadPoolExecutor(1), heartbeat)
    release = threading.Event()
    future = executor.submit(release.wait, 10)

    try:
        busy = heartbeat.read().busy_since
        while busy is None:  # the job starts on the executor's thread
            busy = heartbeat.read().busy_since
    finally:
        release.set()
    assert future.result(10) is True
    executor.shutdown()

    assert heartbeat.read().busy_since is None


def test_watchdog_reports_a_stall_once_and_the_recovery_once() -> None:
    clock = FakeClock()
    heartbeat = DeviceHeartbeat(clock)
    reports: list[str] = []
    watchdog = Watchdog(
        heartbeat, max_batch=8, configured_s=1.0, listeners=(reports.append,), clock=clock
    )
    release = threading.Event()
    started = threading.Event()

    def wedged() -> None:
        started.set()
        release.wait(10)

    worker = threading.Thread(target=heartbeat.wrap(wedged))
    worker.start()
    started.wait(10)
    watchdog.check()
    clock.now += 2.0
    watchdog.check()
    clock.now += 0.5  # still stalled, with a new figure: the status shows it, no new report
    watchdog.check()
    still = watchdog.reason
    release.set()
    worker.join(10)
    watchdog.check()

    assert still.startswith("device thread stalled: one job has run for 2.5s")
    assert len(reports) == 2
    assert reports[0].startswith("device thread stalled: one job has run for 2.0s")
    assert reports[1] == ""
    assert watchdog.reason == ""
