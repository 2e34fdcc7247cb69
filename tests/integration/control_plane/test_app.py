"""The control plane as one process would run it: the artifact URIs it writes into the registry."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc

from control_plane.app import AppConfig, ControlPlane
from yolofleet.consul.devserver import DevConsul
from yolofleet.demo_models import ensure_models
from yolofleet.keys import KeyLayout
from yolofleet.v1 import control_pb2 as pb
from yolofleet.v1 import control_pb2_grpc as pb_grpc


@asynccontextmanager
async def _plane(config: AppConfig) -> AsyncIterator[pb_grpc.ControlPlaneStub]:
    plane = ControlPlane(config)
    await plane.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
            yield pb_grpc.ControlPlaneStub(channel)  # type: ignore[no-untyped-call]
    finally:
        await plane.stop()


async def _register(config: AppConfig, name: str) -> pb.ModelRecord:
    path = ensure_models().v1
    async with _plane(config) as stub:
        record: pb.ModelRecord = await stub.RegisterModel(
            pb.RegisterModelRequest(path=str(path), name=name)
        )
    return record


async def test_artifact_url_is_the_base_of_registered_uris(
    dev_consul: DevConsul, layout: KeyLayout, tmp_path: Path
) -> None:
    config = AppConfig(
        consul=dev_consul.address,
        port=0,
        artifact_dir=tmp_path,
        artifact_url="http://yolofleet-control-plane.yolofleet.svc:8081/",
        key_prefix=layout.prefix,
    )

    record = await _register(config, "m")

    assert record.uri == (
        f"http://yolofleet-control-plane.yolofleet.svc:8081/artifacts/{record.sha256}"
    )
    assert (tmp_path / f"{record.sha256}.pt").stat().st_size == record.size


async def test_a_wildcard_host_advertises_this_machine_and_serves_the_file(
    dev_consul: DevConsul, layout: KeyLayout, tmp_path: Path
) -> None:
    config = AppConfig(
        consul=dev_consul.address,
        host="0.0.0.0",
        port=0,
        artifact_dir=tmp_path,
        key_prefix=layout.prefix,
    )
    plane = ControlPlane(config)
    await plane.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
            stub = pb_grpc.ControlPlaneStub(channel)  # type: ignore[no-untyped-call]
            record = await stub.RegisterModel(
                pb.RegisterModelRequest(path=str(ensure_models().v1), name="m")
            )
        port = plane.artifacts.url.rsplit(":", 1)[1]
        local = f"http://127.0.0.1:{port}/artifacts/{record.sha256}"
        with urllib.request.urlopen(local, timeout=10) as reply:
            body_size = len(reply.read())
    finally:
        await plane.stop()

    assert record.uri == f"http://{socket.getfqdn()}:{port}/artifacts/{record.sha256}"
    assert "0.0.0.0" not in record.uri
    assert body_size == record.size
