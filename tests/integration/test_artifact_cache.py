"""The artifact cache on a real directory: bounded in bytes, LRU over what is not in use,
orphans of dead copies removed, hits re-verified when the file changed."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from control_plane.artifact_server import ArtifactServer
from inference_node.model import ModelRef
from inference_node.swapping.artifact_cache import ArtifactCache, Pin
from inference_node.swapping.loader import ModelLoader
from yolofleet.demo_models import DemoModels
from yolofleet.digests import file_sha256

LOCK_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def _put(cache: ArtifactCache, content: bytes) -> Pin:
    """Admit ``content`` the way the loader does (staged, locked, moved into place), pinned."""
    sha256 = hashlib.sha256(content).hexdigest()
    with cache.staging() as staging:
        os.write(staging.fd, content)
        return cache.admit(staging, sha256=sha256)


def _cached(cache: ArtifactCache) -> set[str]:
    return {path.stem for path in cache.directory.glob("*.pt")}


def test_least_recently_used_artifacts_go_first_to_stay_within_the_bound(
    tmp_path: Path,
) -> None:
    cache = ArtifactCache(tmp_path, max_bytes=250)
    first, second = _put(cache, b"a" * 100), _put(cache, b"b" * 100)
    first.release()
    second.release()
    used_again = cache.lookup(first.sha256)
    assert used_again is not None
    used_again.release()

    third = _put(cache, b"c" * 100)
    third.release()

    assert _cached(cache) == {first.sha256, third.sha256}
    assert cache.total_bytes == 200
    assert not (tmp_path / f"{second.sha256}.verified").exists()


def test_artifacts_in_use_are_never_evicted_and_go_once_released(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path, max_bytes=150)
    serving = _put(cache, b"a" * 100)

    loading = _put(cache, b"b" * 100)

    assert _cached(cache) == {serving.sha256, loading.sha256}  # both pinned: over the bound
    serving.release()
    assert _cached(cache) == {loading.sha256}
    loading.release()
    assert _cached(cache) == {loading.sha256}


def test_an_artifact_another_process_holds_is_not_evicted(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path, max_bytes=150)
    held = _put(cache, b"a" * 100)
    held.release()
    holder = _hold_lock(held.path, shared=True)
    try:
        _put(cache, b"b" * 100).release()

        assert held.sha256 in _cached(cache)
    finally:
        holder.communicate(timeout=30)  # EOF on its stdin: it exits and its lock goes
    _put(cache, b"c" * 100).release()
    assert held.sha256 not in _cached(cache)


def test_partial_files_of_dead_copies_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = tmp_path / ".fetch-dead.part"
    dead.write_bytes(b"half an artifact")
    alive = tmp_path / ".fetch-alive.part"
    stray_marker = tmp_path / f"{'e' * 64}.verified"
    stray_marker.write_text("{}")
    holder = _hold_lock(alive, shared=False)
    try:
        cache = ArtifactCache(tmp_path)
        with cache.staging() as ours:
            removed = cache.remove_orphans()

            assert removed == 2
            assert not dead.exists()
            assert not stray_marker.exists()
            assert alive.exists()
            assert ours.path.exists()
    finally:
        holder.communicate(timeout=30)  # EOF on its stdin: it exits and its lock goes
    assert cache.remove_orphans() == 1
    assert list(tmp_path.iterdir()) == []


def test_unchanged_hit_is_not_hashed_again_but_an_unmarked_one_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = ArtifactCache(tmp_path)
    _put(cache, b"a" * 100).release()
    sha256 = hashlib.sha256(b"a" * 100).hexdigest()
    caplog.set_level(logging.INFO, logger="inference_node.swapping.artifact_cache")

    hit = cache.lookup(sha256)
    assert hit is not None
    hit.release()
    assert "re-verifying" not in caplog.text
    (tmp_path / f"{sha256}.verified").unlink()
    again = cache.lookup(sha256)

    assert again is not None
    again.release()
    assert "re-verifying" in caplog.text
    assert (tmp_path / f"{sha256}.verified").exists()


def test_changed_file_is_re_verified_and_a_corrupt_one_removed(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    pin = _put(cache, b"a" * 100)
    pin.release()

    pin.path.write_bytes(b"a" * 99 + b"!")  # same size, other bytes: identity changed

    assert cache.lookup(pin.sha256) is None
    assert list(tmp_path.iterdir()) == []


def test_corrupted_cached_model_is_fetched_again_and_loads(
    tmp_path: Path, refs: dict[str, ModelRef], models: DemoModels
) -> None:
    loader = ModelLoader(device="cpu", cache_dir=tmp_path, warmup_batch=1)
    with ArtifactServer({refs["v1"].sha256: models.v1}) as server:
        ref = replace(refs["v1"], uri=server.url_for(refs["v1"].sha256))
        cached = loader.fetch_verified(ref)
        with cached.open("r+b") as damaged:
            damaged.seek(1000)
            damaged.write(b"\0" * 64)

        detector, _ = loader.load(ref)
        detector.close()

        assert server.request_count == 2
    assert file_sha256(cached) == ref.sha256


def test_loaded_model_keeps_its_artifact_until_closed(
    tmp_path: Path, refs: dict[str, ModelRef], models: DemoModels
) -> None:
    size = models.v1.stat().st_size
    loader = ModelLoader(device="cpu", cache_dir=tmp_path, warmup_batch=1, cache_bytes=size + 1)
    serving, _ = loader.load(refs["v1"])

    other, _ = loader.load(refs["v2"])  # over the bound: v1 is in use, so it stays
    assert _cached(loader.artifacts) == {refs["v1"].sha256, refs["v2"].sha256}
    serving.close()

    assert _cached(loader.artifacts) == {refs["v2"].sha256}
    other.close()


def _hold_lock(path: Path, *, shared: bool) -> subprocess.Popen[str]:
    """A real other process holding a lock on ``path`` until its stdin closes."""
    script = LOCK_HOLDER.replace("LOCK_EX", "LOCK_SH") if shared else LOCK_HOLDER
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_an_admission_that_fails_leaves_no_lock_behind(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    content = b"an artifact whose marker cannot be written"
    sha256 = hashlib.sha256(content).hexdigest()
    (tmp_path / f"{sha256}.verified").mkdir()  # the marker's path is taken by a directory

    with cache.staging() as staging:
        os.write(staging.fd, content)
        with pytest.raises(IsADirectoryError):
            cache.admit(staging, sha256=sha256)

    fd = os.open(cache.artifact_path(sha256), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError while a pin leaks
    finally:
        os.close(fd)
