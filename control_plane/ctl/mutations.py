"""ctl's mutations: each records an intent and prints one line saying what became of it."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import grpc

from control_plane.ctl import args as args_
from control_plane.ctl import render as fmt
from control_plane.ctl.args import UsageError
from control_plane.ctl.common import EXIT_NOT_FOUND, EXIT_OK, RPC_TIMEOUT_S, Stub
from yolofleet.v1 import control_pb2 as pb

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
