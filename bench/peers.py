"""The processes ``bench.serving`` measures: our node with default flags, and the naive peer."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc

from yolofleet.v1 import inference_pb2 as pb
from yolofleet.v1 import inference_pb2_grpc as pb_grpc

SERVING = re.compile(r"node serving model=\S+ grpc_port=(\d+)")
RETIRED = re.compile(r"slot generation=(\d+) \S+ closed")
LISTENING = re.compile(r"node listening .* threads=(\d+)")
SWAP_FLAGS = ("--watch", "--watch-interval", "0.05", "--min-swap-interval", "0",
              "--latency-factor", "0")  # fmt: skip
"""Flags that let the bench swap back to back; none of them is a serving-performance setting."""


class NodeProcess:
    """``python -m inference_node`` on a copy of the model, with default serving flags."""

    def __init__(self, model_file: Path, cache: Path) -> None:
        self.model_file = model_file
        self.flags = ("--model", str(model_file), "--port", "0", "--device", "cpu", *SWAP_FLAGS)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "inference_node", *self.flags],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "YOLOFLEET_CACHE": str(cache)},
        )  # fmt: skip
        assert self.process.stderr is not None
        self.threads = 0
        for line in self.process.stderr:
            if listening := LISTENING.search(line):
                self.threads = int(listening.group(1))
            if match := SERVING.search(line):
                self.address = f"127.0.0.1:{match.group(1)}"
                break
        else:
            raise RuntimeError("node exited before serving")
        self.retired_at: dict[int, float] = {}
        """``perf_counter`` when the node logged that generation N's model was closed."""
        self._retired = threading.Condition()
        # keep reading: a full stderr pipe would block the node's logging, and its event loop
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.channel = grpc.insecure_channel(self.address)
        self.stub = pb_grpc.InferenceStub(self.channel)  # type: ignore[no-untyped-call]

    def generation(self) -> int:
        status: pb.NodeStatus = self.stub.GetStatus(pb.GetStatusRequest(), timeout=10)
        return status.generation

    def swap_to(self, source: Path, *, timeout_s: float = 120.0) -> tuple[int, float, float]:
        """Atomically replace the watched file and wait until the old model is closed.

        Returns (new generation, written_at, retired_at), ``perf_counter`` times: the file
        replaced, and the node's log line saying the model it replaced was closed.
        """
        before = self.generation()
        temp = self.model_file.with_suffix(".tmp")
        shutil.copyfile(source, temp)
        written = time.perf_counter()
        os.replace(temp, self.model_file)
        with self._retired:
            if not self._retired.wait_for(lambda: before in self.retired_at, timeout_s):
                raise TimeoutError(f"generation {before} not retired within {timeout_s:g}s")
            return before + 1, written, self.retired_at[before]

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if retired := RETIRED.search(line):
                with self._retired:
                    self.retired_at[int(retired.group(1))] = time.perf_counter()
                    self._retired.notify_all()

    def rss_bytes(self) -> int:
        return rss_bytes(self.process.pid)

    def stop(self) -> None:
        self.channel.close()
        self.process.terminate()
        self.process.wait(60)


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) * 1024


class NaiveProcess:
    """``bench.naive_server``: ultralytics ``predict`` one request at a time, ``threads`` torch
    threads, libgomp's own defaults (the peer gets none of our tuning, only its best count).
    """

    def __init__(self, model: Path, work: Path, *, threads: int) -> None:
        port_file = work / f"naive-{threads}.port"
        self.threads = threads
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.naive_server", str(model), str(port_file), str(threads)]
        )
        deadline = time.monotonic() + 120
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("naive server did not start")
            time.sleep(0.1)
        self.address = f"127.0.0.1:{port_file.read_text()}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
