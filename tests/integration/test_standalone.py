"""``python -m inference_node --model PATH --watch`` as a real process: serve, reload, drain."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from inference_node.model import ModelRef
from tests.integration.harness import StderrLog, encode
from tests.waits import wait_for
from yolofleet.demo_models import DemoModels
from yolofleet.synthetic import render_image
from yolofleet.v1 import inference_pb2 as pb
from yolofleet.v1 import inference_pb2_grpc as pb_grpc

SERVING = re.compile(r"node serving model=\S+ grpc_port=(\d+) metrics_port=(\d+)")


class NodeProcess:
    def __init__(self, model: Path, cache: Path) -> None:
        env = {**os.environ, "YOLOFLEET_CACHE": str(cache)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "inference_node", "--model", str(model), "--watch",
             "--watch-interval", "0.2", "--port", "0", "--metrics-port", "0", "--device", "cpu",
             "--threads", "1", "--min-swap-interval", "0"],
            stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.stderr = StderrLog(self.process)
        self.log = self.stderr.log
        self.wait_for_line = self.stderr.wait_for_line

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self.stderr.close()


@pytest.fixture
def model_file(tmp_path: Path, models: DemoModels) -> Path:
    path = tmp_path / "model.pt"
    shutil.copyfile(models.v1, path)
    return path


@pytest.fixture
def node_process(model_file: Path, tmp_path: Path) -> Iterator[NodeProcess]:
    node = NodeProcess(model_file, tmp_path / "cache")
    yield node
    node.close()


def test_standalone_node_serves_reloads_on_content_change_and_drains(
    node_process: NodeProcess, model_file: Path, models: DemoModels, refs: dict[str, ModelRef]
) -> None:
    match = node_process.wait_for_line(SERVING, timeout_s=120)
    grpc_port, metrics_port = int(match.group(1)), int(match.group(2))
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    stub = pb_grpc.InferenceStub(channel)  # type: ignore[no-untyped-call]
    image = encode(render_image(4).image)

    first = stub.Detect(pb.DetectRequest(image=image), timeout=30)
    v2 = models.v2.read_bytes()
    with model_file.open("wb") as handle:  # a copy still being written: half of v2 for a while
        handle.write(v2[: len(v2) // 2])
        handle.flush()
        node_process.wait_for_line(re.compile(r"refused|content changed"), timeout_s=30)
        during = stub.Detect(pb.DetectRequest(image=image), timeout=30)
        handle.write(v2[len(v2) // 2 :])

    wait_for(
        lambda: (
            stub.Detect(pb.DetectRequest(image=image), timeout=30).model.sha256 == refs["v2"].sha256
        ),
        timeout_s=60,
        what="the node to reload the rewritten file",
    )
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
    exposition = metrics.read().decode()
    channel.close()
    node_process.process.send_signal(signal.SIGTERM)
    code = node_process.process.wait(60)

    assert first.model.sha256 == refs["v1"].sha256
    assert during.model.sha256 == refs["v1"].sha256
    assert code == 0
    assert re.search(r'yolofleet_requests_total\{[^}]*code="OK"[^}]*\} [1-9]', exposition)
    assert "yolofleet_active_model" in exposition
    assert "node stopped drained=True" in "".join(node_process.log)
    assert re.search(r"node listening .* threads=1\n", "".join(node_process.log))
