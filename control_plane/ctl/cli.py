"""`ctl`: the operator's command line, a gRPC client of `yolofleet.v1.ControlPlane`.

Mutations (`rollout`, `pause`, `resume`, `promote`, `abort`, `undo`, `adopt`, `models
register`) record intent and print one line saying what happened. Reads (`status`, `history`,
`nodes`, `models list|show`) print tables, or JSON with `--output json`.

`status --watch` follows the group across control-plane restarts and leader changes: when
the stream breaks it reconnects with backoff (until `--timeout`) and goes on printing from the
state it finds. `version` prints ctl's version and needs no control plane.

Exit codes:
    0  success; for `status --watch`, the rollout completed (or the group is idle)
    1  `status --watch`: the rollout was rolled back or aborted
    2  usage error, invalid argument, or `status --watch` timed out
    3  not found, or the group is in the wrong state for the request
    4  the control plane is unavailable or did not answer in time
    5  any other control plane error
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import random
import sys
import time
from collections.abc import Callable, Sequence

import grpc

from control_plane.ctl import args as args_
from control_plane.ctl import render as fmt
from control_plane.ctl.args import Parser, UsageError
from yolofleet.v1 import control_pb2 as pb
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

_EXIT_BY_STATUS = {
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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.name == "version":
            return cmd_version()
        address = _address(args)
        command: Command = args.command
        with grpc.insecure_channel(address) as channel:
            try:
                # The generated *_pb2_grpc module has no type stubs.
                stub: Stub = pb_grpc.ControlPlaneStub(channel)  # type: ignore[no-untyped-call]
                return command(stub, args)
            except grpc.RpcError as exc:
                return _rpc_failed(exc, address=address)
    except UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE


def _address(args: argparse.Namespace) -> str:
    address: str | None = args.control_plane or os.environ.get(ENV_ADDRESS)
    if not address:
        raise UsageError(
            f"no control plane address: pass --control-plane HOST:PORT or set {ENV_ADDRESS}"
        )
    return address


def _rpc_failed(exc: grpc.RpcError, *, address: str) -> int:
    code: grpc.StatusCode = exc.code()
    details = " ".join(str(exc.details() or code.name.lower()).split())
    if code is grpc.StatusCode.UNAVAILABLE:
        details = f"control plane at {address} is unavailable: {details}"
    elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"control plane at {address} did not answer within {RPC_TIMEOUT_S:g}s"
    _error(details)
    return _EXIT_BY_STATUS.get(code, EXIT_ERROR)


def _error(message: str) -> None:
    print(f"ctl: {message}", file=sys.stderr)


# --- commands: mutations -------------------------------------------------------------------


def cmd_rollout(stub: Stub, args: argparse.Namespace) -> int:
    steps: list[int] = args.steps or []
    if steps and steps[0] != args.canary:
        raise UsageError(f"--canary {args.canary} must equal the first of --steps ({steps[0]})")
    request = pb.StartRolloutRequest(
        group=args.group, model=args.model, canary_percent=args.canary, steps=steps
    )
    if args.hold is not None:
        request.hold_s = args.hold
    for field, _, _ in args_.THRESHOLD_FLAGS.values():
        value = getattr(args, field)
        if value is not None:
            setattr(request.thresholds, field, value)
    r = stub.StartRollout(request, timeout=RPC_TIMEOUT_S)
    action = f"rollout of {args.model} to {r.group}"
    return _applied(stub, r, args, action=action, said=lambda now: _started(now, args.model))


def _started(r: pb.Rollout, model: str) -> str:
    if r.phase == "deploying":
        return (
            f"first model of {r.group}: {model} goes to every node at once, without "
            f"analysis (revision {r.revision})"
        )
    percent = r.steps[r.step_index] if 0 <= r.step_index < len(r.steps) else "?"
    return (
        f"rollout of {model} to {r.group} started: {percent}% canary "
        f"{_on_nodes(r)} (revision {r.revision})"
    )


def cmd_pause(stub: Stub, args: argparse.Namespace) -> int:
    r = stub.Pause(pb.GroupRequest(group=args.group), timeout=RPC_TIMEOUT_S)
    return _applied(stub, r, args, action=f"pause of {r.group}")


def cmd_resume(stub: Stub, args: argparse.Namespace) -> int:
    r = stub.Resume(pb.GroupRequest(group=args.group), timeout=RPC_TIMEOUT_S)
    return _applied(stub, r, args, action=f"resume of {r.group}")


def cmd_promote(stub: Stub, args: argparse.Namespace) -> int:
    request = pb.PromoteRequest(group=args.group, full=args.full)
    r = stub.Promote(request, timeout=RPC_TIMEOUT_S)
    what = "full promotion" if args.full else "promotion"
    return _applied(stub, r, args, action=f"{what} of {r.group}{_at_step(r)}")


def cmd_abort(stub: Stub, args: argparse.Namespace) -> int:
    r = stub.Abort(pb.GroupRequest(group=args.group), timeout=RPC_TIMEOUT_S)
    return _applied(stub, r, args, action=f"abort of {r.group}{_at_step(r)}")


def cmd_undo(stub: Stub, args: argparse.Namespace) -> int:
    request = pb.UndoRequest(group=args.group, to_model=args.to or "")
    r = stub.Undo(request, timeout=RPC_TIMEOUT_S)
    target = args.to or "the previous stable model"
    return _applied(stub, r, args, action=f"undo of {r.group} to {target}")


def cmd_adopt(stub: Stub, args: argparse.Namespace) -> int:
    request = pb.AdoptRequest(group=args.group, stable=args.stable or "")
    r = stub.Adopt(request, timeout=RPC_TIMEOUT_S)
    model = r.pending.model if r.HasField("pending") else args.stable or "?"
    return _applied(stub, r, args, action=f"adopt of {r.group} ({model})", said=_adopted)


def _adopted(r: pb.Rollout) -> str:
    return f"{r.reason} [revision {r.revision}]"


def _applied(
    stub: Stub,
    recorded: pb.Rollout,
    args: argparse.Namespace,
    *,
    action: str,
    said: Callable[[pb.Rollout], str] | None = None,
) -> int:
    """Intents are recorded by the RPC and applied by the leader's next tick: waits up to
    ``--wait`` seconds for the outcome of THIS intent (by its id), then prints one line: applied
    (with the state it led to), superseded (by what) or refused (why). The last two exit 3.
    """
    recorded_line = f"{action} recorded (revision {recorded.revision})"
    if args.wait <= 0 or not recorded.intent_id:
        print(f"{recorded_line}; the control plane applies it on its next tick")
        return EXIT_OK
    found = _outcome(stub, recorded, timeout_s=args.wait)
    if found is None:
        print(
            f"{recorded_line}; not applied within {args.wait:g}s: is a control plane leading? "
            f"see `ctl status {recorded.group}`"
        )
        return EXIT_OK
    now, outcome = found
    if outcome.result == "applied":
        print(
            said(now) if said else f"{action} applied: {fmt.summary(now)} [revision {now.revision}]"
        )
        return EXIT_OK
    print(f"{action} {outcome.result}: {outcome.detail} [revision {now.revision}]")
    return EXIT_NOT_FOUND


def _outcome(
    stub: Stub, recorded: pb.Rollout, *, timeout_s: float
) -> tuple[pb.Rollout, pb.IntentOutcome] | None:
    """The rollout that first records the outcome of ``recorded.intent_id``, with that outcome;
    None after ``timeout_s``.
    """
    mine = _mine(recorded)
    if mine is not None:  # settled when it was recorded (an abort cancelling a start)
        return recorded, mine
    stream = stub.WatchRollout(pb.GroupRequest(group=recorded.group), timeout=timeout_s)
    try:
        for now in stream:
            outcome = _mine(now, recorded.intent_id)
            if outcome is not None:
                return now, outcome
    except grpc.RpcError as exc:
        if exc.code() is not grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    finally:
        stream.cancel()
    return None


def _mine(r: pb.Rollout, intent_id: str | None = None) -> pb.IntentOutcome | None:
    wanted = intent_id or r.intent_id
    return next((o for o in r.intents if o.id == wanted), None)


def cmd_models_register(stub: Stub, args: argparse.Namespace) -> int:
    if not os.path.isfile(args.path):
        raise UsageError(f"model file {args.path} does not exist")
    request = pb.RegisterModelRequest(
        path=os.path.abspath(args.path),
        name=args.name,
        uri=args.uri or "",
        parent=args.parent or "",
        notes=args.notes or "",
    )
    m = stub.RegisterModel(request, timeout=RPC_TIMEOUT_S)
    print(
        f"registered model {m.name} from {args.path} "
        f"({fmt.size(m.size)}, sha256 {m.sha256[:12] or '-'})"
    )
    return EXIT_OK


def _at_step(r: pb.Rollout) -> str:
    return f" at step {fmt.step(r)}" if r.steps else ""


def _on_nodes(r: pb.Rollout) -> str:
    return f"on {', '.join(r.canary_nodes)}" if r.canary_nodes else "(no canary nodes yet)"


# --- commands: reads -----------------------------------------------------------------------


def cmd_status(stub: Stub, args: argparse.Namespace) -> int:
    if args.watch:
        if not args.group:
            raise UsageError("status --watch needs a GROUP")
        return watch(stub, group=args.group, timeout_s=args.timeout, as_json=_json(args))
    if args.group:
        r = stub.GetRollout(pb.GroupRequest(group=args.group), timeout=RPC_TIMEOUT_S)
        print(fmt.to_json(r) if _json(args) else fmt.rollout_detail(r))
        return EXIT_OK
    groups = stub.ListGroups(pb.ListGroupsRequest(), timeout=RPC_TIMEOUT_S).groups
    rollouts = [stub.GetRollout(pb.GroupRequest(group=g), timeout=RPC_TIMEOUT_S) for g in groups]
    if _json(args):
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
        _error(f"lost the watch of {group} ({why}); reconnecting in {delay:.1f}s")
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
    _error(f"rollout in {group} did not settle within {timeout_s:g}s (last phase: {phase})")
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
    if _json(args):
        print(fmt.to_json(list(entries)))
    else:
        print(fmt.history_table(entries) if entries else f"no rollouts yet in {args.group}")
    return EXIT_OK


def cmd_nodes(stub: Stub, args: argparse.Namespace) -> int:
    request = pb.ListNodesRequest(group=args.group or "")
    reply = stub.ListNodes(request, timeout=RPC_TIMEOUT_S)
    nodes = reply.nodes
    if _json(args):
        print(fmt.to_json(list(nodes)))
    else:
        where = f" in {args.group}" if args.group else ""
        empty = f"no valid nodes{where}" if reply.invalid else f"no nodes{where}"
        print(fmt.nodes_table(nodes) if nodes else empty)
    _print_invalid(reply.invalid, as_json=_json(args))
    return EXIT_OK


def cmd_models_list(stub: Stub, args: argparse.Namespace) -> int:
    reply = stub.ListModels(pb.ListModelsRequest(), timeout=RPC_TIMEOUT_S)
    models = reply.models
    if _json(args):
        print(fmt.to_json(list(models)))
    else:
        empty = "no valid models registered" if reply.invalid else "no models registered"
        print(fmt.models_table(models) if models else empty)
    _print_invalid(reply.invalid, as_json=_json(args))
    return EXIT_OK


def _print_invalid(records: Sequence[pb.InvalidRecord], *, as_json: bool) -> None:
    """One line per skipped record, key and reason; on stderr under ``-o json`` so stdout
    stays one JSON document.
    """
    for line in fmt.invalid_lines(records):
        print(line, file=sys.stderr if as_json else sys.stdout)


def cmd_models_show(stub: Stub, args: argparse.Namespace) -> int:
    m = stub.GetModel(pb.GetModelRequest(name=args.name), timeout=RPC_TIMEOUT_S)
    print(fmt.to_json(m) if _json(args) else fmt.model_detail(m))
    return EXIT_OK


def _json(args: argparse.Namespace) -> bool:
    return bool(args.output == "json")


# --- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # --control-plane works before or after the command; SUPPRESS keeps a subcommand from
    # overwriting a value given before it.
    common = Parser(add_help=False)
    common.add_argument(
        "--control-plane",
        metavar="HOST:PORT",
        default=argparse.SUPPRESS,
        help=f"control plane address (or ${ENV_ADDRESS})",
    )
    reads = Parser(add_help=False)
    reads.add_argument(
        "--output",
        choices=("table", "json"),
        default="table",
        help="print a table for people (default) or JSON for scripts",
    )

    parser = Parser(prog="ctl", description="Operate yolofleet rollouts through the control plane.")
    parser.add_argument(
        "--control-plane", metavar="HOST:PORT", help=f"control plane address (or ${ENV_ADDRESS})"
    )
    sub = parser.add_subparsers(dest="name", required=True, metavar="COMMAND", help="what to do")

    intents = Parser(add_help=False)
    intents.add_argument(
        "--wait",
        type=args_.duration,
        default=DEFAULT_APPLY_WAIT_S,
        metavar="DURATION",
        help="wait this long for the control plane to apply it, e.g. 10s or 2m "
        f"(0: just record it; default {DEFAULT_APPLY_WAIT_S:g}s)",
    )

    def add(
        name: str, command: Command, help_: str, *, read: bool = False, intent: bool = False
    ) -> Parser:
        parents = [common, reads] if read else [common, intents] if intent else [common]
        p: Parser = sub.add_parser(name, help=help_, parents=parents)
        p.set_defaults(command=command)
        return p

    p = add("rollout", cmd_rollout, "start rolling MODEL out to a group", intent=True)
    p.add_argument("model", metavar="MODEL", help="registered model to roll out")
    p.add_argument("--group", required=True, help="node group to roll it out to")
    p.add_argument("--canary", type=args_.percent, required=True, help="first canary percentage")
    p.add_argument("--steps", type=args_.steps, help="every step's percentage, e.g. 10,50,100")
    p.add_argument(
        "--hold",
        type=args_.duration,
        metavar="DURATION",
        help="how long to hold each step before analysis, e.g. 30s, 5m or 1h",
    )
    bounds = p.add_argument_group("analysis (unset: the control plane's default, in brackets)")
    for flag, (field, kind, help_) in args_.THRESHOLD_FLAGS.items():
        bounds.add_argument(flag, dest=field, type=kind, metavar="N", help=help_)

    p = add("status", cmd_status, "show a group's rollout (or every group's)", read=True)
    p.add_argument("group", metavar="GROUP", nargs="?", help="the group (default: every group)")
    p.add_argument(
        "--watch",
        action="store_true",
        help="follow until the rollout settles, across control-plane restarts; exit 0 "
        "completed, 1 rolled back or aborted, 2 timed out",
    )
    p.add_argument(
        "--timeout",
        type=args_.duration,
        default=DEFAULT_WATCH_TIMEOUT_S,
        metavar="DURATION",
        help=f"give up watching after this long, e.g. 30m (default {DEFAULT_WATCH_TIMEOUT_S:g}s)",
    )

    group_help = "the rollout's group"
    add("pause", cmd_pause, "pause a group's rollout", intent=True).add_argument(
        "group", metavar="GROUP", help=group_help
    )
    add("resume", cmd_resume, "resume a paused rollout", intent=True).add_argument(
        "group", metavar="GROUP", help=group_help
    )
    p = add("promote", cmd_promote, "advance a rollout one step", intent=True)
    p.add_argument("group", metavar="GROUP", help=group_help)
    p.add_argument("--full", action="store_true", help="skip every remaining step")
    add("abort", cmd_abort, "abort a rollout", intent=True).add_argument(
        "group", metavar="GROUP", help=group_help
    )
    p = add("undo", cmd_undo, "go back to an earlier model", intent=True)
    p.add_argument("group", metavar="GROUP", help="the group to undo the last rollout of")
    p.add_argument("--to", metavar="MODEL", help="model to go back to (default: previous stable)")
    p = add("adopt", cmd_adopt, "after lost Consul state: keep what the nodes serve", intent=True)
    p.add_argument("group", metavar="GROUP", help="the group whose Consul state was lost")
    p.add_argument(
        "--stable", metavar="MODEL", help="model to make stable (default: what most nodes serve)"
    )
    add("history", cmd_history, "list a group's past rollouts", read=True).add_argument(
        "group", metavar="GROUP", help="the group"
    )
    add("nodes", cmd_nodes, "list nodes", read=True).add_argument(
        "group", nargs="?", help="only this group's nodes (default: every group's)"
    )
    sub.add_parser("version", help="print ctl's version (needs no control plane)")

    models = sub.add_parser("models", help="the model registry").add_subparsers(
        dest="models_command", required=True, metavar="SUBCOMMAND", help="registry command"
    )
    p = models.add_parser("list", help="list registered models", parents=[common, reads])
    p.set_defaults(command=cmd_models_list)
    p = models.add_parser("show", help="show one model", parents=[common, reads])
    p.set_defaults(command=cmd_models_show)
    p.add_argument("name", metavar="NAME", help="the registered model's name")
    p = models.add_parser("register", help="register a model file", parents=[common])
    p.set_defaults(command=cmd_models_register)
    p.add_argument(
        "path", metavar="PATH", help="the model file (.pt), readable by the control plane"
    )
    p.add_argument("--name", required=True, help="name to register it under")
    p.add_argument("--uri", help="artifact URI nodes fetch from")
    p.add_argument("--parent", help="model this one was derived from")
    p.add_argument("--notes", help="free text kept with the record")
    return parser


if __name__ == "__main__":
    sys.exit(main())
