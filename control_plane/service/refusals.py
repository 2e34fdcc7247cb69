"""Where exceptions become gRPC status codes (``to_status``, ``refusals``), and the checks every
request field goes through before it reaches the store or the controller.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from control_plane.core.errors import (
    AdoptRefused,
    BackendError,
    GroupLost,
    GroupUnknown,
    ModelUnknown,
    NodeUnreachable,
    NothingToDo,
    RolloutConflict,
    SpecInvalid,
    StoreConflict,
)
from yolofleet import registry

logger = logging.getLogger(__name__)


def to_status(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and message an exception leaves the service as."""
    code = grpc.StatusCode
    match exc:
        case SpecInvalid() | registry.ModelUnreadable():
            return code.INVALID_ARGUMENT, str(exc)
        case ModelUnknown() | GroupUnknown() | registry.ModelUnknown():
            return code.NOT_FOUND, str(exc)
        case RolloutConflict() | NothingToDo() | GroupLost() | AdoptRefused():
            return code.FAILED_PRECONDITION, str(exc)
        case registry.RegistryConflict():
            return code.ALREADY_EXISTS, str(exc)
        case StoreConflict():
            return code.ABORTED, str(exc)
        case NodeUnreachable() | BackendError():
            return code.UNAVAILABLE, str(exc)
        case _:
            return code.INTERNAL, "internal error in the control plane; see its log"


@contextlib.asynccontextmanager
async def refusals(context: grpc.aio.ServicerContext[Any, Any], rpc: str) -> AsyncIterator[None]:
    """Every RPC runs inside this: an exception aborts the call with ``to_status``'s code."""
    try:
        yield
    except Exception as exc:
        status, message = to_status(exc)
        if status is grpc.StatusCode.INTERNAL:
            logger.error("rpc=%s failed unexpectedly", rpc, exc_info=True)
        else:
            logger.info("rpc=%s refused code=%s: %s", rpc, status.name, message)
        await context.abort(status, message)


def segment(value: str, what: str) -> str:
    """``value`` as one key segment (a group or model name); ``SpecInvalid`` otherwise."""
    if not value or "/" in value or value in {".", ".."} or not value.isprintable():
        raise SpecInvalid(f"{what} {value!r} is not valid: give a non-empty name without '/'")
    return value


def metadata(text: str) -> dict[str, Any]:
    """A model's ``metadata_json``: empty, or a JSON object; ``SpecInvalid`` otherwise."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecInvalid(f"metadata_json is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise SpecInvalid("metadata_json must be a JSON object")
    return value
