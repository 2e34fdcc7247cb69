"""The subset of Consul's HTTP API the project uses, as request -> reply over a :class:`KVStore`.

Sockets and headers live in :mod:`yolofleet.consul.devserver`; this module owns routing,
parameter parsing, Consul's status codes and JSON shapes:

- ``/v1/kv/<key>``: GET (``recurse``, ``keys``, ``separator``, ``raw``, ``index`` + ``wait``),
  PUT (``cas``, ``acquire``, ``release``, ``flags``; answers ``true``/``false``), DELETE
  (``recurse``, ``cas``). A missing key is a 404 with an empty body and ``X-Consul-Index``.
- ``/v1/txn``: PUT, KV operations only (see :mod:`yolofleet.consul.devtxn` and
  :mod:`yolofleet.consul.kvtxn`): 200 when applied, 409 with the failed operations when rolled
  back, 400/413 for bodies Consul refuses before running them.
- ``/v1/session/create|renew/<id>|destroy/<id>|info/<id>|list|node/<node>`` and
  ``/v1/status/leader|peers``. Sessions default to the dev node and its ``serfHealth`` check;
  ``Checks``/``NodeChecks``/``ServiceChecks`` follow Consul's rules for defaults and legacy use.
- Malformed requests get 400 with a text body; refusals from the store (an unknown session on
  acquire, a TTL out of range) get 500 with Consul's message, as Consul's RPC errors do.
- ``wait`` defaults to 5 minutes, is capped at 10, and gets up to ``wait/16`` of random jitter.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from yolofleet.consul.catalog import DEV_NODE
from yolofleet.consul.devsession import SessionRequestError, parse_session_create
from yolofleet.consul.devtxn import TxnBodyError, parse_txn
from yolofleet.consul.durations import format_duration, parse_duration
from yolofleet.consul.kvstore import KVStore, StoreError
from yolofleet.consul.kvtxn import TxnOutcome
from yolofleet.consul.model import KVPair, SessionInfo

DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0
MAX_VALUE_SIZE = 512 * 1024
DATACENTER = "dc1"
NODE_NAME = DEV_NODE
LEADER = "127.0.0.1:8300"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiRequest:
    """One HTTP request: method, decoded path, query (last value per name) and body."""

    method: str
    path: str
    query: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiReply:
    """What to send back; ``index`` set means a query response with Consul's meta headers."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    index: int | None = None


class _BadRequest(Exception):
    """A request Consul's HTTP layer would answer with 400."""


def _json(data: Any, *, status: int = 200, index: int | None = None) -> ApiReply:
    return ApiReply(status=status, body=json.dumps(data).encode("utf-8"), index=index)


def _text(status: int, message: str) -> ApiReply:
    return ApiReply(status=status, body=message.encode("utf-8"), content_type="text/plain")


def _uint(query: Mapping[str, str], name: str) -> int:
    text = query[name]
    if not text.isdigit():
        raise _BadRequest(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    return int(text)


def entry_json(entry: KVPair) -> dict[str, Any]:
    """A KV entry as Consul renders it (empty values as ``null``, no ``Session`` when unlocked)."""
    doc: dict[str, Any] = {
        "LockIndex": entry.lock_index,
        "Key": entry.key,
        "Flags": entry.flags,
        "Value": base64.b64encode(entry.value).decode("ascii") if entry.value else None,
        "CreateIndex": entry.create_index,
        "ModifyIndex": entry.modify_index,
    }
    if entry.session:
        doc["Session"] = entry.session
    return doc


def txn_json(outcome: TxnOutcome) -> dict[str, Any]:
    """A transaction's reply body as Consul renders it (``null`` for the list that is absent)."""
    if not outcome.ok:
        errors = [{"OpIndex": position, "What": what} for position, what in outcome.errors]
        return {"Results": None, "Errors": errors}
    return {"Results": [{"KV": entry_json(entry)} for entry in outcome.results], "Errors": None}


def session_json(info: SessionInfo) -> dict[str, Any]:
    """A session as Consul renders it (``LockDelay`` in nanoseconds, ``TTL`` as a duration)."""
    doc: dict[str, Any] = {
        "ID": info.id,
        "Name": info.name,
        "Node": info.node,
        "LockDelay": round(info.lock_delay * 1e9),
        "Behavior": info.behavior.value,
        "TTL": format_duration(info.ttl) if info.ttl else "",
        "NodeChecks": list(info.node_checks),
        "ServiceChecks": [{"ID": check, "Namespace": ""} for check in info.service_checks] or None,
    }
    if info.checks:
        doc["Checks"] = list(info.checks)
    return doc | {"CreateIndex": info.create_index, "ModifyIndex": info.modify_index}


class ConsulApi:
    """Routes requests to the store and renders Consul's replies."""

    def __init__(self, store: KVStore, *, rng: random.Random | None = None) -> None:
        self._store = store
        self._rng = rng or random.Random()
        self._routes: dict[tuple[str, str], Callable[[str, ApiRequest], ApiReply]] = {
            ("GET", "/v1/kv/"): self._kv_get,
            ("PUT", "/v1/kv/"): self._kv_put,
            ("DELETE", "/v1/kv/"): self._kv_delete,
            ("PUT", "/v1/txn"): self._txn,
            ("PUT", "/v1/session/create"): self._session_create,
            ("PUT", "/v1/session/renew/"): self._session_renew,
            ("PUT", "/v1/session/destroy/"): self._session_destroy,
            ("GET", "/v1/session/info/"): self._session_info,
            ("GET", "/v1/session/list"): self._session_list,
            ("GET", "/v1/session/node/"): self._session_node,
            ("GET", "/v1/status/leader"): lambda _rest, _req: _json(LEADER),
            ("GET", "/v1/status/peers"): lambda _rest, _req: _json([LEADER]),
        }

    def handle(self, request: ApiRequest) -> ApiReply:
        """Answer one request the way a Consul agent would."""
        path = "/v1/kv/" if request.path == "/v1/kv" else request.path
        matches = [
            (method, prefix)
            for method, prefix in self._routes
            if path == prefix or (prefix.endswith("/") and path.startswith(prefix))
        ]
        if not matches:
            return _text(404, "404 page not found\n")
        route = self._routes.get((request.method, matches[0][1]))
        if route is None:
            return _text(405, f"method {request.method} not allowed\n")
        try:
            if request.query.get("dc", DATACENTER) != DATACENTER:
                raise StoreError("No path to datacenter")
            return route(path[len(matches[0][1]) :], request)
        except _BadRequest as exc:
            return _text(400, str(exc))
        except StoreError as exc:
            return _text(500, str(exc))

    def _blocking(self, query: Mapping[str, str]) -> tuple[int, float]:
        """``(min_index, timeout)`` from ``index``/``wait``, jitter included."""
        wait = DEFAULT_WAIT
        if "wait" in query:
            try:
                wait = parse_duration(query["wait"])
            except ValueError:
                raise _BadRequest("Invalid wait time") from None
        if "index" not in query:
            return 0, 0.0
        if not query["index"].isdigit():
            raise _BadRequest("Invalid index")
        wait = min(max(wait, 0.0), MAX_WAIT)
        return int(query["index"]), wait + self._rng.uniform(0.0, wait / 16)

    # ---- KV ----------------------------------------------------------------------------

    def _kv_get(self, key: str, request: ApiRequest) -> ApiReply:
        query = request.query
        min_index, timeout = self._blocking(query)
        if "keys" in query:
            separator = query.get("separator", query.get("seperator", ""))
            index, keys = self._store.keys(
                key, separator=separator, min_index=min_index, timeout=timeout
            )
            if not keys and key:
                return ApiReply(status=404, index=index)
            return _json(list(keys), index=index)
        if "recurse" in query:
            index, entries = self._store.list(key, min_index=min_index, timeout=timeout)
            if not entries:
                return ApiReply(status=404, index=index)
            return _json([entry_json(e) for e in entries], index=index)
        if not key:
            raise _BadRequest("Missing key name")
        index, entry = self._store.get(key, min_index=min_index, timeout=timeout)
        if entry is None:
            return ApiReply(status=404, index=index)
        if "raw" in query:
            return ApiReply(body=entry.value, content_type="text/plain", index=index)
        return _json([entry_json(entry)], index=index)

    def _kv_put(self, key: str, request: ApiRequest) -> ApiReply:
        query = request.query
        if not key:
            raise _BadRequest("Missing key name")
        _refuse_together(query, "cas", "acquire", "release")
        flags = _uint(query, "flags") if "flags" in query else 0
        if len(request.body) > MAX_VALUE_SIZE:
            return _text(
                413,
                f"Request body({len(request.body)} bytes) too large, "
                f"max size: {MAX_VALUE_SIZE} bytes.",
            )
        value = request.body
        if "cas" in query:
            return _json(self._store.cas(key, value, index=_uint(query, "cas"), flags=flags))
        if "acquire" in query:
            return _json(self._store.acquire(key, value, session=query["acquire"], flags=flags))
        if "release" in query:
            return _json(self._store.release(key, value, session=query["release"], flags=flags))
        return _json(self._store.put(key, value, flags=flags))

    def _kv_delete(self, key: str, request: ApiRequest) -> ApiReply:
        query = request.query
        _refuse_together(query, "recurse", "cas")
        if "recurse" in query:
            return _json(self._store.delete_tree(key))
        if not key:
            raise _BadRequest("Missing key name")
        if "cas" in query:
            return _json(self._store.delete_cas(key, index=_uint(query, "cas")))
        return _json(self._store.delete(key))

    # ---- transactions ------------------------------------------------------------------

    def _txn(self, _rest: str, request: ApiRequest) -> ApiReply:
        try:
            ops = parse_txn(request.body)
        except TxnBodyError as exc:
            return _text(exc.status, str(exc))
        outcome = self._store.txn(ops)
        return _json(txn_json(outcome), status=200 if outcome.ok else 409)

    # ---- sessions ----------------------------------------------------------------------

    def _session_create(self, _rest: str, request: ApiRequest) -> ApiReply:
        try:
            wanted = parse_session_create(request.body, default_node=NODE_NAME)
        except SessionRequestError as exc:
            return _text(exc.status, str(exc))
        return _json({"ID": self._store.create_session(wanted).id})

    def _session_renew(self, session_id: str, _request: ApiRequest) -> ApiReply:
        if not session_id:
            raise _BadRequest("Missing session")
        info = self._store.renew_session(session_id)
        if info is None:
            return _text(404, f"Session id '{session_id}' not found")
        return _json([session_json(info)])

    def _session_destroy(self, session_id: str, _request: ApiRequest) -> ApiReply:
        if not session_id:
            raise _BadRequest("Missing session")
        self._store.destroy_session(session_id)
        return _json(True)

    def _session_info(self, session_id: str, request: ApiRequest) -> ApiReply:
        if not session_id:
            raise _BadRequest("Missing session")
        min_index, timeout = self._blocking(request.query)
        index, info = self._store.session_info(session_id, min_index=min_index, timeout=timeout)
        return _json([session_json(info)] if info else [], index=index)

    def _session_list(self, _rest: str, request: ApiRequest) -> ApiReply:
        min_index, timeout = self._blocking(request.query)
        index, infos = self._store.list_sessions(min_index=min_index, timeout=timeout)
        return _json([session_json(info) for info in infos], index=index)

    def _session_node(self, node: str, request: ApiRequest) -> ApiReply:
        if not node:
            raise _BadRequest("Missing node name")
        min_index, timeout = self._blocking(request.query)
        index, infos = self._store.node_sessions(node, min_index=min_index, timeout=timeout)
        return _json([session_json(info) for info in infos], index=index)


def _refuse_together(query: Mapping[str, str], *names: str) -> None:
    if sum(name in query for name in names) > 1:
        raise _BadRequest(f"Conflicting flags: {urlencode(sorted(query.items()))}\n")
