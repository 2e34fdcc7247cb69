"""ctl's reads: status (and `--watch`, which follows restarts), history, nodes, models."""

from __future__ import annotations

import argparse
import importlib.metadata
import random
import sys
import time
from collections.abc import Sequence

import grpc

from control_plane.ctl import render as fmt
from control_plane.ctl.args import UsageError
from control_plane.ctl.common import (
    EXIT_OK,
    EXIT_TIMEOUT,
    RECONNECT_FIRST_S,
    RECONNECT_MAX_S,
    RECONNECTABLE,
    RPC_TIMEOUT_S,
    SETTLED,
    Stub,
    as_json,
    error,
)
from yolofleet.v1 import control_pb2 as pb

# --- commands: reads -----------------------------------------------------------------------


def cmd_status(stub: Stub, args: argparse.Namespace) -> int:
    if args.watch:
        if not args.group:
            raise UsageError("status --watch needs a GROUP")
        return watch(stub, group=args.group, timeout_s=args.timeout, as_json=as_json(args))
    if args.group:
        r = stub.GetRollout(pb.GroupRequest(group=args.group), timeout=RPC_TIMEOUT_S)
        print(fmt.to_json(r) if as_json(args) else fmt.rollout_detail(r))
        return EXIT_OK
    groups = stub.ListGroups(pb.ListGroupsRequest(), timeout=RPC_TIMEOUT_S).groups
    rollouts = [stub.GetRollout(pb.GroupRequest(group=g), timeout=RPC_TIMEOUT_S) for g in groups]
    if as_json(args):
        print(fmt.to_json(rollouts))
    else:
        print(fmt.rollouts_table(rollouts) if rollouts else "no groups")
    return EXIT_OK


def watch(stub: Stub, *, group: str, timeout_s: float, as_json: bool) -> int:
    """Print each change of phase or step once; return when the rollout settles or time runs out.

    A broken stream (a replica restarting, a leader change, a full replica) is reopened with
    backoff until ``timeout_s``; the first state seen after it is printed only if it changed.
    A control plane that never answered at all fails at once, like any other command.
    """
    deadline = time.monotonic() + timeout_s
    seen = _Watched()
    failures = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return _watch_timed_out(group, timeout_s, seen)
        try:
            settled = _follow(stub, group=group, timeout_s=remaining, as_json=as_json, seen=seen)
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                return _watch_timed_out(group, timeout_s, seen)
            if exc.code() not in RECONNECTABLE or seen.last is None:
                raise
            why = f"{exc.code().name}: {' '.join(str(exc.details() or '').split())}"
        else:
            if settled is not None:
                return settled
            why = "the control plane ended the stream"
        failures = 0 if seen.fresh else failures + 1
        seen.fresh = False
        delay = min(RECONNECT_MAX_S, RECONNECT_FIRST_S * 2**failures) * random.uniform(0.8, 1.2)
        error(f"lost the watch of {group} ({why}); reconnecting in {delay:.1f}s")
        time.sleep(max(0.0, min(delay, deadline - time.monotonic())))


class _Watched:
    """What one ``watch`` has printed so far, across reconnects."""

    def __init__(self) -> None:
        self.last: tuple[str, int] | None = None
        self.fresh = False
        """A state arrived since the last reconnect (the backoff starts over)."""


def _follow(
    stub: Stub, *, group: str, timeout_s: float, as_json: bool, seen: _Watched
) -> int | None:
    """One stream: prints changes; the exit code once settled, None if the stream ended."""
    stream = stub.WatchRollout(pb.GroupRequest(group=group), timeout=timeout_s)
    try:
        for r in stream:
            seen.fresh = True
            if (r.phase, r.step_index) != seen.last:
                seen.last = (r.phase, r.step_index)
                print(fmt.to_json_line(r) if as_json else fmt.summary(r), flush=True)
            if r.phase in SETTLED:
                return SETTLED[r.phase]
    finally:
        stream.cancel()
    return None


def _watch_timed_out(group: str, timeout_s: float, seen: _Watched) -> int:
    phase = seen.last[0] if seen.last else "unknown"
    error(f"rollout in {group} did not settle within {timeout_s:g}s (last phase: {phase})")
    return EXIT_TIMEOUT


def cmd_version() -> int:
    try:
        version = importlib.metadata.version("yolofleet")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    print(f"ctl {version} (API {pb.DESCRIPTOR.package})")
    return EXIT_OK


def cmd_history(stub: Stub, args: argparse.Namespace) -> int:
    entries = stub.History(pb.GroupRequest(group=args.group), timeout=RPC_TIMEOUT_S).entries
    if as_json(args):
        print(fmt.to_json(list(entries)))
    else:
        print(fmt.history_table(entries) if entries else f"no rollouts yet in {args.group}")
    return EXIT_OK


def cmd_nodes(stub: Stub, args: argparse.Namespace) -> int:
    request = pb.ListNodesRequest(group=args.group or "")
    reply = stub.ListNodes(request, timeout=RPC_TIMEOUT_S)
    nodes = reply.nodes
    if as_json(args):
        print(fmt.to_json(list(nodes)))
    else:
        where = f" in {args.group}" if args.group else ""
        empty = f"no valid nodes{where}" if reply.invalid else f"no nodes{where}"
        print(fmt.nodes_table(nodes) if nodes else empty)
    _print_invalid(reply.invalid, as_json=as_json(args))
    return EXIT_OK


def cmd_models_list(stub: Stub, args: argparse.Namespace) -> int:
    reply = stub.ListModels(pb.ListModelsRequest(), timeout=RPC_TIMEOUT_S)
    models = reply.models
    if as_json(args):
        print(fmt.to_json(list(models)))
    else:
        empty = "no valid models registered" if reply.invalid else "no models registered"
        print(fmt.models_table(models) if models else empty)
    _print_invalid(reply.invalid, as_json=as_json(args))
    return EXIT_OK


def _print_invalid(records: Sequence[pb.InvalidRecord], *, as_json: bool) -> None:
    """One line per skipped record, key and reason; on stderr under ``-o json`` so stdout
    stays one JSON document.
    """
    for line in fmt.invalid_lines(records):
        print(line, file=sys.stderr if as_json else sys.stdout)


def cmd_models_show(stub: Stub, args: argparse.Namespace) -> int:
    m = stub.GetModel(pb.GetModelRequest(name=args.name), timeout=RPC_TIMEOUT_S)
    print(fmt.to_json(m) if as_json(args) else fmt.model_detail(m))
    return EXIT_OK
