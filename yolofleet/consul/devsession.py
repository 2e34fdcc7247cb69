"""The wire side of the dev server's ``PUT /v1/session/create``: Consul's body into a request.

Field names are matched without regard to case, as Consul's decoder does. Defaults are Consul's:
the agent's own node, ``serfHealth`` as the only check, behavior ``release``, lock delay 15 s, no
TTL. A body that cannot be decoded is a 400 ("Request decode failed"); a behavior or TTL Consul
refuses is a 500 with Consul's message, as its RPC layer answers. Whether the node and checks
exist is the store's question (:class:`~yolofleet.consul.catalog.Catalog`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from yolofleet.consul.durations import parse_duration
from yolofleet.consul.model import SERF_HEALTH, SessionBehavior

_LOCK_DELAY_SECONDS_BELOW = 1000  # Consul reads lock delays under 1000 (ns) as seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRequest:
    """A session to create, with Consul's defaults filled in; durations in seconds."""

    name: str = ""
    node: str
    behavior: SessionBehavior = SessionBehavior.RELEASE
    ttl: float | None = None
    lock_delay: float = 15.0
    node_checks: tuple[str, ...] = (SERF_HEALTH,)
    service_checks: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()

    @property
    def check_ids(self) -> tuple[str, ...]:
        """Every check the session is tied to, whichever field named it."""
        return self.checks + self.node_checks + self.service_checks


class SessionRequestError(Exception):
    """A create request Consul refuses: ``status`` (400 or 500) and Consul's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_session_create(body: bytes, *, default_node: str) -> SessionRequest:
    """The session a create request asks for; :class:`SessionRequestError` if refused."""
    try:
        raw = json.loads(body) if body else {}
        if not isinstance(raw, dict):
            raise ValueError("expected a JSON object")
    except ValueError as exc:
        raise _decode_failed(str(exc)) from None
    fields = {str(name).lower(): value for name, value in raw.items()}
    behavior_text = str(fields.get("behavior") or SessionBehavior.RELEASE.value)
    if behavior_text not in {b.value for b in SessionBehavior}:
        raise SessionRequestError(500, f"Invalid Behavior setting '{behavior_text}'")
    ttl_text = str(fields.get("ttl") or "")
    try:
        ttl = parse_duration(ttl_text) if ttl_text else None
    except ValueError as exc:
        raise SessionRequestError(500, f"Session TTL '{ttl_text}' invalid: {exc}") from None
    checks, node_checks, service_checks = _session_checks(fields)
    return SessionRequest(
        name=str(fields.get("name") or ""),
        node=str(fields.get("node") or default_node),
        behavior=SessionBehavior(behavior_text),
        ttl=ttl or None,
        lock_delay=_lock_delay(fields.get("lockdelay", "15s")),
        node_checks=node_checks,
        service_checks=service_checks,
        checks=checks,
    )


def _decode_failed(reason: str) -> SessionRequestError:
    return SessionRequestError(400, f"Request decode failed: {reason}")


def _session_checks(
    fields: Mapping[str, Any],
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``(Checks, NodeChecks, ServiceChecks)`` of a create request, with Consul's defaults.

    Both ``Checks`` and ``NodeChecks`` default to ``serfHealth``; then, as Consul does for
    clients older than 1.7, an empty ``Checks`` empties ``NodeChecks``, a default ``Checks``
    defers to ``NodeChecks``, and an empty ``NodeChecks`` drops ``Checks``.
    """
    checks = _check_ids(fields, "checks", default=(SERF_HEALTH,))
    node_checks = _check_ids(fields, "nodechecks", default=(SERF_HEALTH,))
    service = fields.get("servicechecks") or []
    if not isinstance(service, list) or not all(
        isinstance(item, dict) and isinstance(item.get("ID"), str) for item in service
    ):
        raise _decode_failed("ServiceChecks must be a list of {ID, Namespace} objects")
    if not checks:
        node_checks = ()
    elif checks == (SERF_HEALTH,) or not node_checks:
        checks = ()
    return checks, node_checks, tuple(item["ID"] for item in service)


def _check_ids(
    fields: Mapping[str, Any], name: str, *, default: tuple[str, ...]
) -> tuple[str, ...]:
    if name not in fields:
        return default
    value = fields[name]
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _decode_failed(f"{name} must be a list of check ids, got {value!r}")
    return tuple(value)


def _lock_delay(value: object) -> float:
    """Consul's LockDelay: a duration string or nanoseconds; values under 1000 mean seconds."""
    if isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise _decode_failed(str(exc)) from None
        return seconds * 1e9 if seconds * 1e9 < _LOCK_DELAY_SECONDS_BELOW else seconds
    if isinstance(value, int | float) and not isinstance(value, bool):
        nanos = float(value)
        return nanos if nanos < _LOCK_DELAY_SECONDS_BELOW else nanos / 1e9
    raise _decode_failed(f"LockDelay {value!r} is not a duration")
