"""What every ctl command shares: the address variable, deadlines, exit codes, error output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import grpc

from yolofleet.v1 import control_pb2_grpc as pb_grpc

ENV_ADDRESS = "YOLOFLEET_CONTROL_PLANE"
RPC_TIMEOUT_S = 10.0
DEFAULT_WATCH_TIMEOUT_S = 1800.0
DEFAULT_APPLY_WAIT_S = 10.0
RECONNECT_FIRST_S = 0.2
RECONNECT_MAX_S = 5.0
RECONNECTABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)
"""Watch errors that mean "this replica went away or is full", not "you asked wrongly"."""

EXIT_OK = 0
EXIT_ROLLED_BACK = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 2
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
EXIT_ERROR = 5

# Phases at which `status --watch` stops, and the exit code each one gives.
SETTLED = {
    "completed": EXIT_OK,
    "idle": EXIT_OK,
    "rolled_back": EXIT_ROLLED_BACK,
    "aborted": EXIT_ROLLED_BACK,
    "adopted": EXIT_OK,
}

EXIT_BY_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE,
    grpc.StatusCode.OUT_OF_RANGE: EXIT_USAGE,
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: EXIT_NOT_FOUND,
    grpc.StatusCode.ABORTED: EXIT_NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
}

Stub = pb_grpc.ControlPlaneStub
Command = Callable[[Stub, argparse.Namespace], int]


def error(message: str) -> None:
    print(f"ctl: {message}", file=sys.stderr)


def as_json(args: argparse.Namespace) -> bool:
    return bool(args.output == "json")
