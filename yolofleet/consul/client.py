"""``ConsulClient``: typed, error-wrapping access to Consul's KV store and sessions via py-consul.

Everything that crosses into py-consul goes through here: values come back as
:class:`~yolofleet.consul.model.KVPair` / :class:`~yolofleet.consul.model.SessionInfo`, and
py-consul or requests exceptions leave as the :mod:`yolofleet.consul.errors` tree. Calls block;
asyncio code runs them on a thread (see :mod:`yolofleet.consul.watch`). One client may be used
from several threads, though each long-running loop usually gets its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import consul
import requests
from consul.base import Response
from consul.callback import CB

from yolofleet.consul.durations import format_duration, parse_duration
from yolofleet.consul.errors import ConsulRejected, ConsulUnavailable, SessionNotFound
from yolofleet.consul.model import KVPair, KVRead, SessionBehavior, SessionInfo
from yolofleet.consul.settings import ConsulSettings, make_consul
from yolofleet.consul.txn import TxnOp, TxnResult, ops_json, result_from_json

logger = logging.getLogger(__name__)

_REFUSALS = (
    "Session TTL",
    "Invalid Behavior",
    "Lock delay",
    "Missing node registration",
    "Missing check",
    "critical state",
)
"""Messages of requests Consul answers with a 500 but will never accept as they are."""


class ConsulClient:
    """One agent's KV and session endpoints, in our own types and errors."""

    def __init__(self, settings: ConsulSettings) -> None:
        self._settings = settings
        self._consul = make_consul(settings)

    @classmethod
    def from_env(cls) -> ConsulClient:
        return cls(ConsulSettings.from_env())

    @property
    def settings(self) -> ConsulSettings:
        return self._settings

    def close(self) -> None:
        self._consul.http.session.close()

    # ---- KV ----------------------------------------------------------------------------

    def read(self, key: str, *, index: int = 0, wait: float | None = None) -> KVRead:
        """Read ``key``; with ``index > 0`` a blocking query held up to ``wait`` seconds."""
        with self._translated(f"read key {key}"):
            header, data = self._consul.kv.get(
                key,
                index=index if index > 0 else None,
                wait=format_duration(wait) if wait is not None else None,
            )
        return KVRead(index=_index(header), pair=_pair(data) if data else None)

    def get(self, key: str) -> KVPair | None:
        """The pair at ``key``, or ``None``."""
        return self.read(key).pair

    def list(self, prefix: str) -> tuple[KVPair, ...]:
        """Every pair under ``prefix``, sorted by key."""
        with self._translated(f"list prefix {prefix}"):
            _header, data = self._consul.kv.get(prefix, recurse=True)
        return tuple(_pair(item) for item in data or ())

    def keys(self, prefix: str, *, separator: str | None = None) -> tuple[str, ...]:
        """Key names under ``prefix``, cut after ``separator`` when given."""
        with self._translated(f"list keys under {prefix}"):
            _header, data = self._consul.kv.get(prefix, keys=True, separator=separator)
        return tuple(data or ())

    def put(
        self,
        key: str,
        value: bytes,
        *,
        cas: int | None = None,
        flags: int | None = None,
        acquire: str | None = None,
        release: str | None = None,
    ) -> bool:
        """Write ``key``. ``False`` means a CAS mismatch or a lock not acquired / not held."""
        with self._translated(f"write key {key}"):
            done = self._consul.kv.put(
                key, value, cas=cas, flags=flags, acquire=acquire, release=release
            )
        return bool(done)

    def delete(self, key: str, *, recurse: bool = False, cas: int | None = None) -> bool:
        """Delete ``key`` (or everything under it); ``False`` only on a CAS mismatch."""
        with self._translated(f"delete key {key}"):
            return bool(self._consul.kv.delete(key, recurse=recurse or None, cas=cas))

    def txn(self, ops: Sequence[TxnOp]) -> TxnResult:
        """Apply ``ops`` atomically. A rolled-back transaction is ``ok=False``, not an error.

        Raises :class:`ConsulRejected` when Consul refuses the request as sent (400, 413: a
        malformed body, too many operations) and :class:`ConsulUnavailable` when it cannot be
        reached or fails.
        """
        action = f"apply a transaction of {len(ops)} operations"
        with self._translated(action):
            status, doc = self._consul.http.put(
                _txn_reply,
                "/v1/txn",
                data=json.dumps(ops_json(ops)),
                headers=self._consul.prepare_headers(),
            )
        try:
            return result_from_json(doc, applied=status == 200)
        except ValueError as exc:
            raise ConsulUnavailable(
                f"Consul at {self._settings.url} answered unreadably ({exc}); could not {action}"
            ) from exc

    # ---- sessions ----------------------------------------------------------------------

    def create_session(
        self,
        *,
        name: str,
        ttl: float | None,
        behavior: SessionBehavior = SessionBehavior.RELEASE,
        lock_delay: float = 15.0,
    ) -> str:
        """Create a session and return its id. Real agents want ``10 <= ttl <= 86400`` seconds."""
        body: dict[str, Any] = {
            "Name": name,
            "Behavior": behavior.value,
            "LockDelay": format_duration(lock_delay),
        }
        if ttl is not None:
            body["TTL"] = format_duration(ttl)
        with self._translated(f"create session {name}"):
            session_id = self._consul.http.put(
                CB.json(is_id=True),
                "/v1/session/create",
                data=json.dumps(body),
                headers=self._consul.prepare_headers(),
            )
        return str(session_id)

    def renew_session(self, session_id: str) -> SessionInfo:
        """Restart the session's TTL; raise :class:`SessionNotFound` if it is gone."""
        with self._translated(f"renew session {session_id}"):
            try:
                data = self._consul.session.renew(session_id)
            except consul.NotFound as exc:
                raise SessionNotFound(f"session {session_id} no longer exists") from exc
        return _session(data)

    def destroy_session(self, session_id: str) -> None:
        """Invalidate the session now (its keys are released or deleted per its behavior)."""
        with self._translated(f"destroy session {session_id}"):
            self._consul.session.destroy(session_id)

    def session_info(self, session_id: str) -> SessionInfo | None:
        """The session, or ``None`` if it does not exist."""
        with self._translated(f"read session {session_id}"):
            _header, data = self._consul.session.info(session_id)
        return _session(data) if data else None

    def leader(self) -> str:
        """The raft leader's address; an empty string when the cluster has none."""
        with self._translated("read the raft leader"):
            return str(self._consul.status.leader() or "")

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """Re-raise py-consul and requests exceptions as our own, with the action and address."""
        where = self._settings.url
        try:
            yield
        except requests.exceptions.Timeout as exc:
            raise ConsulUnavailable(f"Consul at {where} timed out; could not {action}") from exc
        except requests.exceptions.RequestException as exc:
            raise ConsulUnavailable(
                f"Consul at {where} is unreachable ({_reason(exc)}); could not {action}"
            ) from exc
        except (consul.ACLPermissionDenied, consul.ACLDisabled) as exc:
            raise ConsulRejected(f"Consul at {where} denied access: could not {action}") from exc
        except consul.ConsulException as exc:
            raise _classify(exc, action=action, where=where) from exc


def _classify(exc: consul.ConsulException, *, action: str, where: str) -> Exception:
    text = str(exc)
    if "invalid session" in text:
        return SessionNotFound(f"could not {action}: the session no longer exists ({text})")
    if any(refusal in text for refusal in _REFUSALS):
        return ConsulRejected(f"Consul at {where} refused to {action}: {text.strip()}")
    if text[:1] == "5":
        return ConsulUnavailable(f"Consul at {where} failed ({text.strip()}); could not {action}")
    return ConsulRejected(f"Consul at {where} rejected the request ({text.strip()}): {action}")


def _txn_reply(response: Response) -> tuple[int, Any]:
    """py-consul callback for ``/v1/txn``: 200 and 409 both carry a result body."""
    if response.code in (200, 409):
        try:
            return response.code, json.loads(response.body)
        except ValueError as exc:
            raise consul.ConsulException(f"500 unreadable transaction reply: {exc}") from exc
    if response.code in (401, 403):
        raise consul.ACLPermissionDenied(response.body)
    raise consul.ConsulException(f"{response.code} {response.body}")


def _reason(exc: requests.exceptions.RequestException) -> str:
    """A short, stable description of a transport failure (no object addresses)."""
    cause: BaseException | None = exc
    for _depth in range(16):
        if cause is None:
            break
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "connection dropped"
    if "refused" in text:
        return "connection refused"
    return type(exc).__name__


def _index(header: object) -> int:
    try:
        return int(str(header))
    except ValueError:
        return 0


def _pair(data: Mapping[str, Any]) -> KVPair:
    return KVPair(
        key=str(data["Key"]),
        value=data.get("Value") or b"",
        flags=int(data.get("Flags") or 0),
        create_index=int(data.get("CreateIndex") or 0),
        modify_index=int(data.get("ModifyIndex") or 0),
        lock_index=int(data.get("LockIndex") or 0),
        session=data.get("Session") or None,
    )


def _session(data: Mapping[str, Any]) -> SessionInfo:
    ttl_text = str(data.get("TTL") or "")
    return SessionInfo(
        id=str(data["ID"]),
        name=str(data.get("Name") or ""),
        node=str(data.get("Node") or ""),
        behavior=SessionBehavior(data.get("Behavior") or SessionBehavior.RELEASE.value),
        ttl=(parse_duration(ttl_text) or None) if ttl_text else None,
        lock_delay=float(data.get("LockDelay") or 0) / 1e9,
        node_checks=tuple(str(check) for check in data.get("NodeChecks") or ()),
        service_checks=tuple(str(check.get("ID", "")) for check in data.get("ServiceChecks") or ()),
        checks=tuple(str(check) for check in data.get("Checks") or ()),
        create_index=int(data.get("CreateIndex") or 0),
        modify_index=int(data.get("ModifyIndex") or 0),
    )
