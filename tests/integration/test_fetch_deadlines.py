"""Fetches over real loopback HTTP end by the clock and on cancel, whatever the server does;
refusals that would repeat are permanent and found before any I/O."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from control_plane.artifact_server import ArtifactServer
from inference_node.errors import ArtifactError, ArtifactRefused, LoadCancelled
from inference_node.model import ModelRef
from inference_node.swapping.artifacts import FetchLimits
from inference_node.swapping.fetch_copy import CHUNK_BYTES, Copy
from inference_node.swapping.loader import ModelLoader
from tests.integration.hostile_http import RELEASE_S, Hostile
from yolofleet.demo_models import DemoModels
from yolofleet.digests import file_sha256

LATE_S = 0.9
"""Slack over a deadline for the watcher's tick and a busy machine; under the trickle's 2 s
between bytes, so a deadline checked only when a byte arrives would miss it."""


def _loader(tmp_path: Path, **limits: Any) -> ModelLoader:
    fetch = FetchLimits(**limits)
    return ModelLoader(
        device="cpu", cache_dir=tmp_path / "cache", warmup_batch=1, fetch_limits=fetch
    )


def _timed(call: Any) -> tuple[ArtifactError, float]:
    started = time.monotonic()
    with pytest.raises(ArtifactError) as raised:
        call()
    return raised.value, time.monotonic() - started


def test_trickling_server_fails_by_the_total_deadline_as_transient(
    tmp_path: Path, refs: dict[str, ModelRef]
) -> None:
    loader = _loader(tmp_path, deadline_s=3.0, idle_s=30.0)

    with Hostile("trickle_body").running() as server:
        error, took = _timed(lambda: loader.fetch_verified(replace(refs["v1"], uri=server.url)))

    assert 3.0 <= took <= 3.0 + LATE_S
    assert "took longer than the deadline of 3s" in str(error)
    assert type(error) is ArtifactError
    assert error.transient
    assert list((tmp_path / "cache").iterdir()) == []


def test_headers_sent_a_byte_at_a_time_fail_by_the_connect_deadline(
    tmp_path: Path, refs: dict[str, ModelRef]
) -> None:
    loader = _loader(tmp_path, connect_s=1.0)

    with Hostile("trickle_headers").running() as server:
        error, took = _timed(lambda: loader.fetch_verified(replace(refs["v1"], uri=server.url)))

    assert took <= 1.0 + LATE_S
    assert "no response within 1s (connect timed out)" in str(error)
    assert error.transient


def test_a_server_that_never_answers_fails_by_the_connect_deadline_not_the_idle_one(
    tmp_path: Path, refs: dict[str, ModelRef]
) -> None:
    loader = _loader(tmp_path, connect_s=1.5, idle_s=0.5)

    with Hostile("silent").running() as server:
        error, took = _timed(lambda: loader.fetch_verified(replace(refs["v1"], uri=server.url)))

    assert 1.5 <= took <= 1.5 + LATE_S
    assert "no response within 1.5s (connect timed out)" in str(error)
    assert error.transient


def test_cancel_stops_a_trickling_download_within_a_second(
    tmp_path: Path, refs: dict[str, ModelRef]
) -> None:
    loader = _loader(tmp_path, deadline_s=600.0)
    cancel = threading.Event()

    with Hostile("trickle_body").running() as server, ThreadPoolExecutor(1) as pool:
        load = pool.submit(loader.load, replace(refs["v1"], uri=server.url), cancel=cancel)
        assert not _settles(load, within_s=1.0)  # it really is stuck in the download
        cancel.set()
        cancelled_at = time.monotonic()
        with pytest.raises(LoadCancelled, match=r"download of http://.* cancelled after \d+ bytes"):
            load.result(timeout=RELEASE_S)
        took = time.monotonic() - cancelled_at

    assert took <= 1.0
    assert list((tmp_path / "cache").iterdir()) == []


def test_loader_shutdown_cancels_a_load_in_progress(
    tmp_path: Path, refs: dict[str, ModelRef]
) -> None:
    loader = _loader(tmp_path)

    with Hostile("trickle_body").running() as server, ThreadPoolExecutor(1) as pool:
        load = pool.submit(loader.load, replace(refs["v1"], uri=server.url))
        assert not _settles(load, within_s=0.5)
        loader.shutdown()

        with pytest.raises(LoadCancelled):
            load.result(timeout=1.0 + LATE_S)


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        pytest.param(404, False, id="not-found"),
        pytest.param(403, False, id="forbidden"),
        pytest.param(410, False, id="gone"),
        pytest.param(429, True, id="too-many-requests"),
        pytest.param(500, True, id="server-error"),
        pytest.param(503, True, id="unavailable"),
    ],
)
def test_http_status_is_permanent_or_transient(
    tmp_path: Path, refs: dict[str, ModelRef], status: int, transient: bool
) -> None:
    loader = _loader(tmp_path)

    with Hostile("status_only", status=status).running() as server:
        error, _ = _timed(lambda: loader.fetch_verified(replace(refs["v1"], uri=server.url)))

    assert f"the server answered HTTP {status}" in str(error)
    assert error.transient is transient
    assert isinstance(error, ArtifactRefused) is not transient


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"sha256": "A" * 64}, "not 64 lowercase hex digits", id="uppercase-sha"),
        pytest.param({"sha256": "abc"}, "not 64 lowercase hex digits", id="short-sha"),
        pytest.param({"uri": "s3://bucket/shapes.pt"}, "scheme 's3' is not supported", id="s3"),
        pytest.param({"uri": "ftp://host/shapes.pt"}, "scheme 'ftp' is not supported", id="ftp"),
    ],
)
def test_malformed_refs_are_refused_as_permanent_before_any_io(
    tmp_path: Path, refs: dict[str, ModelRef], changes: dict[str, str], message: str
) -> None:
    loader = _loader(tmp_path)

    with Hostile("status_only", status=500).running() as server:
        ref = replace(refs["v1"], uri=server.url)
        with pytest.raises(ArtifactRefused, match=message) as refused:
            loader.load(replace(ref, **changes))

    assert not refused.value.transient
    assert server.requests == 0
    assert list((tmp_path / "cache").iterdir()) == []


def test_fifo_is_refused_at_once_as_permanent(tmp_path: Path, refs: dict[str, ModelRef]) -> None:
    fifo = tmp_path / "shapes.pt"
    os.mkfifo(fifo)
    loader = _loader(tmp_path)

    with ThreadPoolExecutor(1) as pool:  # a blocking open would never return: bound the wait
        copy = pool.submit(loader.fetch_verified, replace(refs["v1"], uri=fifo.as_uri()))
        with pytest.raises(ArtifactRefused, match="not a regular file") as refused:
            copy.result(timeout=5)

    assert not refused.value.transient


def test_missing_file_is_permanent(tmp_path: Path, refs: dict[str, ModelRef]) -> None:
    missing = replace(refs["v1"], uri=(tmp_path / "nowhere.pt").as_uri())

    with pytest.raises(ArtifactRefused, match="No such file") as refused:
        _loader(tmp_path).fetch_verified(missing)

    assert not refused.value.transient


def test_redirect_to_the_artifact_server_is_followed(
    tmp_path: Path, refs: dict[str, ModelRef], models: DemoModels
) -> None:
    loader = _loader(tmp_path)
    redirecting = Hostile("redirect")

    with ArtifactServer({refs["v1"].sha256: models.v1}) as target, redirecting.running():
        redirecting.location = target.url_for(refs["v1"].sha256)
        path = loader.fetch_verified(replace(refs["v1"], uri=redirecting.url))

    assert file_sha256(path) == refs["v1"].sha256


def _settles(future: Any, *, within_s: float) -> bool:
    try:
        future.result(timeout=within_s)
    except TimeoutError:
        return False
    except Exception:
        return True
    return True


def test_redirect_to_a_local_file_is_refused(tmp_path: Path, refs: dict[str, ModelRef]) -> None:
    redirecting = Hostile("redirect")
    redirecting.location = refs["v1"].uri  # the right bytes, but no server may point at files

    with redirecting.running(), pytest.raises(ArtifactRefused, match="not HTTP") as refused:
        _loader(tmp_path).fetch_verified(replace(refs["v1"], uri=redirecting.url))

    assert not refused.value.transient


def test_an_aborted_file_copy_stops_before_its_next_write(tmp_path: Path) -> None:
    source = tmp_path / "large.pt"
    source.write_bytes(b"x" * (8 * CHUNK_BYTES))
    ref = ModelRef(name="large", version="1", uri=str(source), sha256="0" * 64)
    target = tmp_path / "copy.part"
    copies: list[Copy] = []

    def clock() -> float:  # the copy reads it once per chunk: the watcher aborts after one
        if copies and copies[0].progress.received:
            copies[0].abort()
        return 0.0

    copies.append(
        Copy(
            ref, out_fd=os.open(target, os.O_WRONLY | os.O_CREAT), limits=FetchLimits(), clock=clock
        )
    )
    copies[0].run()

    assert copies[0].result is None
    assert copies[0].failure is not None
    assert not copies[0].failure.permanent
    assert target.stat().st_size == CHUNK_BYTES


def test_a_redirect_loop_is_refused_as_permanent(tmp_path: Path, refs: dict[str, ModelRef]) -> None:
    looping = Hostile("redirect")
    looping.location = looping.url

    with looping.running(), pytest.raises(ArtifactRefused, match="after 5 redirects") as refused:
        _loader(tmp_path).fetch_verified(replace(refs["v1"], uri=looping.url))

    assert not refused.value.transient
    assert looping.requests == 6
