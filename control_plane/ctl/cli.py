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

import argparse
import os
import sys
from collections.abc import Sequence

import grpc

from control_plane.ctl import args as args_
from control_plane.ctl.args import Parser, UsageError
from control_plane.ctl.common import (
    DEFAULT_APPLY_WAIT_S,
    DEFAULT_WATCH_TIMEOUT_S,
    ENV_ADDRESS,
    EXIT_BY_STATUS,
    EXIT_ERROR,
    EXIT_USAGE,
    RPC_TIMEOUT_S,
    Command,
    Stub,
    error,
)
from control_plane.ctl.mutations import (
    cmd_abort,
    cmd_adopt,
    cmd_models_register,
    cmd_pause,
    cmd_promote,
    cmd_resume,
    cmd_rollout,
    cmd_undo,
)
from control_plane.ctl.reads import (
    cmd_history,
    cmd_models_list,
    cmd_models_show,
    cmd_nodes,
    cmd_status,
    cmd_version,
)
from yolofleet.v1 import control_pb2_grpc as pb_grpc


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
        error(str(exc))
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
    error(details)
    return EXIT_BY_STATUS.get(code, EXIT_ERROR)


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
