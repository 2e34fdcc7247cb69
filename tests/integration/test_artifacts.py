"""The loader fetches artifacts over real HTTP; only complete, verified files enter its cache."""

from __future__ import annotations

import contextlib
import http.client
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from control_plane.artifact_server import ArtifactServer
from inference_node.errors import ArtifactError, DigestMismatch
from inference_node.model import ModelRef
from inference_node.swapping.artifacts import FetchLimits
from inference_node.swapping.loader import ModelLoader
from yolofleet.demo_models import DemoModels
from yolofleet.digests import file_sha256

SERVER_DEADLINE_S = 30.0


class _QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _truncating(payload: bytes) -> type[BaseHTTPRequestHandler]:
    """Announces the whole payload, sends half of it, then closes the connection."""

    class Truncating(_QuietHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.close_connection = True

    return Truncating


def _stalling(payload: bytes, release: threading.Event) -> type[BaseHTTPRequestHandler]:
    """Sends the headers and a little of the body, then goes silent until released."""

    class Stalling(_QuietHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[:1000])
            self.wfile.flush()
            release.wait(SERVER_DEADLINE_S)
            self.close_connection = True

    return Stalling


def _failing(status: int) -> type[BaseHTTPRequestHandler]:
    class Failing(_QuietHandler):
        def do_GET(self) -> None:
            self.send_error(status)

    return Failing


@contextlib.contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on 127.0.0.1; yields a URL on it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/shapes.pt"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(SERVER_DEADLINE_S)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def loader(cache: Path) -> ModelLoader:
    return ModelLoader(device="cpu", cache_dir=cache, warmup_batch=1)


@pytest.fixture
def v1_server(refs: dict[str, ModelRef], models: DemoModels) -> Iterator[ArtifactServer]:
    with ArtifactServer({refs["v1"].sha256: models.v1}) as server:
        yield server


def _over_http(ref: ModelRef, server: ArtifactServer) -> ModelRef:
    return replace(ref, uri=server.url_for(ref.sha256))


def test_model_fetched_over_http_loads_and_is_cached_by_digest(
    loader: ModelLoader, cache: Path, refs: dict[str, ModelRef], v1_server: ArtifactServer
) -> None:
    ref = _over_http(refs["v1"], v1_server)

    detector, report = loader.load(ref)

    try:
        assert detector.spec.class_names == ("circle", "square", "triangle")
        assert detector.spec.input_size == 160
        assert report.fetch_s > 0
    finally:
        detector.close()
    assert sorted(path.name for path in cache.iterdir()) == [
        f"{ref.sha256}.pt",
        f"{ref.sha256}.verified",
    ]
    assert file_sha256(cache / f"{ref.sha256}.pt") == ref.sha256


def test_cached_digest_is_not_downloaded_again(
    cache: Path, refs: dict[str, ModelRef], v1_server: ArtifactServer
) -> None:
    ref = _over_http(refs["v1"], v1_server)
    first = ModelLoader(device="cpu", cache_dir=cache, warmup_batch=1).fetch_verified(ref)
    requests_after_first = v1_server.request_count

    again = ModelLoader(device="cpu", cache_dir=cache, warmup_batch=1).fetch_verified(ref)

    assert requests_after_first == 1
    assert again == first
    assert v1_server.request_count == requests_after_first


def test_connection_closed_mid_body_leaves_nothing_in_cache(
    loader: ModelLoader, cache: Path, refs: dict[str, ModelRef], models: DemoModels
) -> None:
    payload = models.v1.read_bytes()

    with _serving(_truncating(payload)) as url, pytest.raises(ArtifactError) as failed:
        loader.fetch_verified(replace(refs["v1"], uri=url))

    message = str(failed.value)
    assert f"download of {url} failed after {len(payload) // 2} bytes" in message
    assert f"{len(payload)} bytes were announced" in message
    assert list(cache.iterdir()) == []


def test_stalled_download_times_out_and_leaves_nothing_in_cache(
    cache: Path, refs: dict[str, ModelRef], models: DemoModels
) -> None:
    loader = ModelLoader(
        device="cpu", cache_dir=cache, warmup_batch=1, fetch_limits=FetchLimits(idle_s=0.3)
    )
    release = threading.Event()

    with _serving(_stalling(models.v1.read_bytes(), release)) as url:
        try:
            with pytest.raises(ArtifactError, match=r"failed after 1000 bytes: .*timed out"):
                loader.fetch_verified(replace(refs["v1"], uri=url))
        finally:
            release.set()

    assert list(cache.iterdir()) == []


def test_artifact_over_the_size_limit_is_refused(
    cache: Path, refs: dict[str, ModelRef], v1_server: ArtifactServer
) -> None:
    loader = ModelLoader(
        device="cpu", cache_dir=cache, warmup_batch=1, fetch_limits=FetchLimits(max_bytes=1000)
    )

    with pytest.raises(ArtifactError, match="exceeds the limit of 1000 bytes"):
        loader.fetch_verified(_over_http(refs["v1"], v1_server))

    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("status", [404, 503], ids=["not-found", "unavailable"])
def test_http_error_status_is_named(
    loader: ModelLoader, cache: Path, refs: dict[str, ModelRef], status: int
) -> None:
    with _serving(_failing(status)) as url, pytest.raises(ArtifactError) as failed:
        loader.fetch_verified(replace(refs["v1"], uri=url))

    assert f"server answered HTTP {status}" in str(failed.value)
    assert str(refs["v1"]) in str(failed.value)
    assert list(cache.iterdir()) == []


def test_unknown_digest_on_artifact_server_is_404(
    loader: ModelLoader, refs: dict[str, ModelRef], v1_server: ArtifactServer
) -> None:
    with pytest.raises(ArtifactError, match="HTTP 404"):
        loader.fetch_verified(_over_http(refs["v2"], v1_server))


def test_stopped_server_is_reported_as_refused(
    loader: ModelLoader, refs: dict[str, ModelRef], models: DemoModels
) -> None:
    server = ArtifactServer({refs["v1"].sha256: models.v1}).start()
    ref = _over_http(refs["v1"], server)
    server.stop()

    with pytest.raises(ArtifactError, match="failed after 0 bytes: connection refused"):
        loader.fetch_verified(ref)


def test_wrong_bytes_over_http_are_a_digest_mismatch_and_not_cached(
    loader: ModelLoader, cache: Path, refs: dict[str, ModelRef], models: DemoModels
) -> None:
    lying = ArtifactServer({refs["v1"].sha256: models.v2})

    with lying, pytest.raises(DigestMismatch, match="sha256 of http://"):
        loader.fetch_verified(_over_http(refs["v1"], lying))

    assert list(cache.iterdir()) == []


def test_file_uri_still_fetches(
    loader: ModelLoader, cache: Path, refs: dict[str, ModelRef]
) -> None:
    artifact = loader.fetch_verified(refs["v1"])

    assert artifact == cache / f"{refs['v1'].sha256}.pt"
    assert file_sha256(artifact) == refs["v1"].sha256


def _get(server: ArtifactServer, path: str, *, method: str = "GET") -> http.client.HTTPResponse:
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=SERVER_DEADLINE_S)
    connection.request(method, path)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_artifact_server_serves_a_directory_by_digest(tmp_path: Path, models: DemoModels) -> None:
    root = tmp_path / "artifacts"
    root.mkdir()
    digest = file_sha256(models.v1)
    (root / f"{digest}.pt").write_bytes(models.v1.read_bytes())

    with ArtifactServer(root) as server:
        got = _get(server, f"/artifacts/{digest}")
        head = _get(server, f"/artifacts/{digest}", method="HEAD")

    assert got.status == head.status == 200
    assert got.headers["ETag"] == head.headers["ETag"] == f'"{digest}"'
    assert got.headers["Content-Length"] == str(models.v1.stat().st_size)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/artifacts/../secret.pt", id="dot-dot"),
        pytest.param("/artifacts/%2e%2e%2fsecret.pt", id="encoded-dot-dot"),
        pytest.param("/artifacts/" + "0" * 64, id="unknown-digest"),
        pytest.param("/artifacts/" + "A" * 64, id="uppercase"),
        pytest.param("/secret.pt", id="outside-prefix"),
    ],
)
def test_artifact_server_answers_404_outside_its_digests(tmp_path: Path, path: str) -> None:
    root = tmp_path / "artifacts"
    root.mkdir()
    (tmp_path / "secret.pt").write_bytes(b"secret")
    (root / f"{'a' * 64}.pt").write_bytes(b"artifact")

    with ArtifactServer(root) as server:
        response = _get(server, path)

    assert response.status == 404


def test_artifact_server_rejects_malformed_digests(models: DemoModels) -> None:
    with pytest.raises(ValueError, match="not a sha256 digest"):
        ArtifactServer({"../etc/passwd": models.v1})
