from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from inference_node.model import ModelRef
from inference_node.swapping.file_watch import FileWatcher
from tests.waits import until
from yolofleet.digests import file_sha256


@dataclass
class Requests:
    """Records what the watcher asked for, and on which thread."""

    refs: list[ModelRef] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)

    def request(self, ref: ModelRef) -> None:
        self.refs.append(ref)
        self.threads.add(threading.get_ident())


@dataclass
class Watched:
    path: Path
    requests: Requests


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[Watched]:
    path = tmp_path / "model.pt"
    path.write_bytes(b"v1")
    requests = Requests()
    watcher = FileWatcher(path, requests, name="shapes", interval_s=0.01)
    watcher.remember(
        ModelRef(name="shapes", version="v1", uri=path.as_uri(), sha256=file_sha256(path))
    )
    task = asyncio.get_running_loop().create_task(watcher.run())
    yield Watched(path, requests)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_changed_content_is_requested_once_with_its_digest(watched: Watched) -> None:
    watched.path.write_bytes(b"version two")

    await until(lambda: watched.requests.refs, what="the request for the new content")

    (ref,) = watched.requests.refs
    assert ref.sha256 == file_sha256(watched.path)
    assert (ref.name, ref.version, ref.uri) == ("shapes", ref.sha256[:12], watched.path.as_uri())
    assert watched.requests.threads == {threading.get_ident()}  # requested on the loop
