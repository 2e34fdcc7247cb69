"""Run a real ``InferenceNode`` on its own event loop thread, and talk to it over loopback."""

from __future__ import annotations

import asyncio
import io
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
from PIL import Image

from inference_node.config import FleetConfig, NodeConfig
from inference_node.link.fleet import FleetLink
from inference_node.model import ModelRef
from inference_node.node import InferenceNode
from inference_node.serving.catalog import ModelCatalog
from inference_node.swapping.slot import Active
from yolofleet.consul import ConsulClient, ConsulSettings
from yolofleet.v1 import inference_pb2 as pb
from yolofleet.v1 import inference_pb2_grpc as pb_grpc

T = TypeVar("T")


class RunningNode:
    """An in-process node serving on 127.0.0.1 with a random port."""

    def __init__(self, config: NodeConfig, *, catalog: ModelCatalog | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.node = InferenceNode(config, catalog=catalog)
        self._call(self.node.start())
        self.link: FleetLink | None = None
        if config.fleet is not None:
            self.link = self._call(self._attach(config.fleet))
        self.address = f"127.0.0.1:{self.node.port}"
        self.channel = grpc.insecure_channel(self.address)
        self.stub = pb_grpc.InferenceStub(self.channel)  # type: ignore[no-untyped-call]

    def swap_to(self, ref: ModelRef, *, timeout_s: float = 120.0) -> Active:
        """Ask for ``ref`` and block until it is live; re-raises the refusal."""

        async def swap() -> Active:
            return await self.node.swap_to(ref)

        return self._call(swap(), timeout_s)

    def request_swap(self, ref: ModelRef) -> Future[Active]:
        """Ask for ``ref`` without waiting; the future settles when it is live or refused."""

        async def swap() -> Active:
            return await self.node.swap_to(ref)

        return asyncio.run_coroutine_threadsafe(swap(), self._loop)

    def on_loop(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the node's loop thread (to read loop-owned state safely)."""

        async def call() -> T:
            return function()

        return self._call(call())

    async def _attach(self, fleet: FleetConfig) -> FleetLink:
        link = FleetLink(self.node, ConsulClient(ConsulSettings.from_address(fleet.consul)), fleet)
        link.start()
        return link

    def detect_code(self, image: bytes, *, timeout_s: float = 60.0) -> grpc.StatusCode:
        """Send one Detect; OK or the status it failed with (for counting outcomes under load)."""
        try:
            self.stub.Detect(pb.DetectRequest(image=image), timeout=timeout_s)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
        return grpc.StatusCode.OK

    def status(self) -> pb.NodeStatus:
        status: pb.NodeStatus = self.stub.GetStatus(pb.GetStatusRequest(), timeout=10)
        return status

    def stop(self) -> None:
        self.channel.close()
        if self.link is not None:
            self._call(self.link.close(), 30)
        self._call(self.node.stop(), 60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)


def free_port() -> int:
    """A loopback port nothing listens on right now (for a process told its port up front)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def encode(image: np.ndarray | Image.Image, fmt: str = "PNG") -> bytes:
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    picture.save(buffer, fmt)
    return buffer.getvalue()


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


SERVING_LINE = re.compile(r"node serving model=\S+ grpc_port=(\d+)")


class StderrLog:
    """A child process's stderr, read on a thread: ``log`` keeps every line, ``wait_for_line``
    waits (with a deadline) for the next line matching a pattern."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def wait_for_line(self, pattern: re.Pattern[str], timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if match := pattern.search(line):
                return match
        raise AssertionError(f"no line matching {pattern.pattern}; log:\n{''.join(self.log)}")

    def close(self) -> None:
        """After the process ended: the reader finishes and the pipe is closed."""
        self._thread.join(10)
        assert self.process.stderr is not None
        self.process.stderr.close()

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)
            self.log.append(line)


class NodeSubprocess:
    """``python -m inference_node --model MODEL [flags]`` as a real process, serving on loopback.

    The process writes its log to stderr; ``log`` keeps every line, ``wait_for_line`` waits for
    one. ``peak_rss_bytes`` reads the process's high-water mark (VmHWM) from /proc.
    """

    def __init__(self, model: Path, *flags: str, cache: Path, timeout_s: float = 120.0) -> None:
        env = {**os.environ, "YOLOFLEET_CACHE": str(cache)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "inference_node", "--model", str(model), "--port", "0",
             "--device", "cpu", "--threads", "1", *flags],
            stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.stderr = StderrLog(self.process)
        self.log = self.stderr.log
        self.wait_for_line = self.stderr.wait_for_line
        port = int(self.wait_for_line(SERVING_LINE, timeout_s).group(1))
        self.address = f"127.0.0.1:{port}"
        self.channel = grpc.insecure_channel(self.address)
        self.stub = pb_grpc.InferenceStub(self.channel)  # type: ignore[no-untyped-call]

    def peak_rss_bytes(self) -> int:
        """The process's resident-memory high-water mark (VmHWM)."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc/PID/status")

    def reset_peak_rss(self) -> bool:
        """Reset the high-water mark to the current RSS (Linux ``clear_refs`` 5); False when
        the kernel does not allow it, in which case the mark keeps its earlier peak."""
        try:
            with open(f"/proc/{self.process.pid}/clear_refs", "w") as clear:
                clear.write("5")
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.channel.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait(10)
        self.stderr.close()
