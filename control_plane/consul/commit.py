"""The tick's one write as a Consul transaction: the operations, and what a refusal means.

ONE transaction that checks the leader lock is still held by the tick's session
(``check-session``, the fence), writes the document with ``cas`` on the revision it read (or
``check-index`` when only the target changes, ``check-not-exists`` when there is no document),
and writes the target with ``cas`` on the index it read. All or nothing: a deposed leader gets
``Deposed``, a lost race ``StoreConflict``, and neither lands a byte.
"""

from __future__ import annotations

import logging

from control_plane.consul.codec import encode_doc
from control_plane.core.document import RolloutDoc
from control_plane.core.errors import Deposed, StoreConflict
from control_plane.core.state import GroupState
from control_plane.core.store import Fence
from yolofleet.consul import TxnOp, TxnResult
from yolofleet.keys import KeyLayout
from yolofleet.records import GroupTarget, ModelPin, to_json

logger = logging.getLogger(__name__)


def commit_ops(
    layout: KeyLayout,
    *,
    doc: RolloutDoc | None,
    state: GroupState,
    target: GroupTarget | None,
    target_index: int,
    fence: Fence | None,
) -> list[TxnOp]:
    """[leader lock held by the fence's session], the document written (cas) or left as read
    (check-index / check-not-exists), [the target written (cas on the index read)].
    """
    rollout_key = layout.rollout(state.group)
    ops = [TxnOp.check_session(fence.key, session=fence.session)] if fence else []
    if doc is not None:
        ops.append(TxnOp.cas(rollout_key, encode_doc(doc), index=state.revision))
    elif state.revision:
        ops.append(TxnOp.check_index(rollout_key, index=state.revision))
    else:
        ops.append(TxnOp.check_not_exists(rollout_key))
    if target is not None:
        ops.append(TxnOp.cas(layout.group_target(state.group), to_json(target), index=target_index))
    return ops


def refusal(result: TxnResult, *, state: GroupState, fence: Fence | None) -> Exception:
    """Why a rolled-back commit wrote nothing: the fence failed (``Deposed``), or a race."""
    if fence is not None and any(e.op_index == 0 for e in result.errors):
        return Deposed(
            f"session {fence.session} no longer holds the leader lock {fence.key}; "
            f"nothing written ({result.describe()})"
        )
    return StoreConflict(
        f"rollout of group {state.group} changed since revision {state.revision} was "
        f"read; nothing written ({result.describe()})"
    )


def log_target(group: str, target: GroupTarget) -> None:
    logger.info(
        "group=%s target generation=%d stable=%s canary=%s canary_nodes=%s",
        group,
        target.generation,
        _pin_name(target.stable),
        _pin_name(target.canary),
        ",".join(target.canary_nodes),
    )


def _pin_name(pin: ModelPin | None) -> str:
    return f"{pin.name}@{pin.version}" if pin is not None else "none"
