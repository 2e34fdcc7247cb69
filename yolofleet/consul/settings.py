"""Where Consul is and how to talk to it: ``ConsulSettings`` and the py-consul factory.

Settings come from the environment Consul's own CLI reads (``CONSUL_HTTP_ADDR`` with an optional
scheme, ``CONSUL_HTTP_SSL``, ``CONSUL_HTTP_TOKEN`` / ``CONSUL_HTTP_TOKEN_FILE``,
``CONSUL_CACERT``, ``CONSUL_CLIENT_CERT`` / ``CONSUL_CLIENT_KEY``, ``CONSUL_HTTP_SSL_VERIFY``)
or from an explicit ``"HOST:PORT"`` such as a ``--consul`` flag.

:func:`make_consul` always bounds every request: ``timeout`` to connect and to read, and for a
blocking query ``timeout + wait * 17/16`` to read, since the agent may hold it for ``wait`` plus
up to ``wait/16`` of jitter. The bound is applied by a transport adapter from the request's own
``index``/``wait`` parameters, so it does not depend on what a py-consul version does by default
(older ones set no timeout at all).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import consul
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter

from yolofleet.consul.durations import parse_duration
from yolofleet.consul.errors import ConsulConfigError

DEFAULT_TIMEOUT = 10.0
DEFAULT_BLOCKING_WAIT = 300.0  # what Consul assumes when a blocking query names no wait
MAX_BLOCKING_WAIT = 600.0
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsulSettings:
    """How to reach one Consul agent. ``verify`` is a bool or a CA bundle path."""

    host: str = "127.0.0.1"
    port: int = 8500
    scheme: str = "http"
    token: str | None = None
    verify: bool | str = True
    cert: str | tuple[str, str] | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def address(self) -> str:
        """``"HOST:PORT"`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    @classmethod
    def from_address(cls, address: str, *, timeout: float = DEFAULT_TIMEOUT) -> ConsulSettings:
        """Parse ``"HOST:PORT"``, ``"http://HOST:PORT"`` or ``"https://HOST[:PORT]"``."""
        text = address.strip()
        if text.startswith("unix://"):
            raise ConsulConfigError(f"Consul address {address!r}: unix sockets are not supported")
        parts = urlsplit(text if "://" in text else f"http://{text}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConsulConfigError(
                f"Consul address {address!r} is not HOST:PORT or http(s)://HOST:PORT"
            )
        try:
            port = parts.port or (8501 if parts.scheme == "https" else 8500)
        except ValueError as exc:
            raise ConsulConfigError(f"Consul address {address!r} has a bad port") from exc
        return cls(host=parts.hostname, port=port, scheme=parts.scheme, timeout=timeout)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        address: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> ConsulSettings:
        """Settings from Consul's CLI environment variables (defaults: 127.0.0.1:8500, http).

        ``address`` (a ``--consul`` flag) replaces ``CONSUL_HTTP_ADDR``; the token and TLS
        settings still come from the environment, as the ``consul`` CLI does with ``-http-addr``.
        """
        env = os.environ if environ is None else environ
        address = address or env.get("CONSUL_HTTP_ADDR") or "127.0.0.1:8500"
        settings = cls.from_address(address, timeout=timeout)
        if "CONSUL_HTTP_SSL" in env and "://" not in address:
            https = _env_bool(env, "CONSUL_HTTP_SSL")
            settings = replace(settings, scheme="https" if https else "http")
        verify: bool | str = env.get("CONSUL_CACERT") or True
        if "CONSUL_HTTP_SSL_VERIFY" in env and not _env_bool(env, "CONSUL_HTTP_SSL_VERIFY"):
            verify = False
        return replace(settings, token=_token(env), verify=verify, cert=_client_cert(env))


def _env_bool(env: Mapping[str, str], name: str) -> bool:
    value = env[name]
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConsulConfigError(f"{name}={value!r} is not a boolean (use true or false)")


def _token(env: Mapping[str, str]) -> str | None:
    if env.get("CONSUL_HTTP_TOKEN"):
        return env["CONSUL_HTTP_TOKEN"]
    token_file = env.get("CONSUL_HTTP_TOKEN_FILE")
    if not token_file:
        return None
    try:
        return Path(token_file).read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise ConsulConfigError(f"cannot read CONSUL_HTTP_TOKEN_FILE={token_file}: {exc}") from exc


def _client_cert(env: Mapping[str, str]) -> str | tuple[str, str] | None:
    cert, key = env.get("CONSUL_CLIENT_CERT"), env.get("CONSUL_CLIENT_KEY")
    if key and not cert:
        raise ConsulConfigError("CONSUL_CLIENT_KEY is set but CONSUL_CLIENT_CERT is not")
    return (cert, key) if cert and key else cert or None


def read_timeout(url: str, timeout: float) -> float:
    """The read timeout for a request to ``url``: longer than the agent may hold it."""
    params = parse_qs(urlsplit(url).query)
    index = params.get("index", ["0"])[0]
    if not index.isdigit() or int(index) == 0:
        return timeout
    try:
        wait = parse_duration(params["wait"][0]) if "wait" in params else DEFAULT_BLOCKING_WAIT
    except ValueError:
        wait = DEFAULT_BLOCKING_WAIT
    return timeout + min(wait, MAX_BLOCKING_WAIT) * 17 / 16


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request a connect and read timeout fitted to its blocking ``wait``."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        kwargs["timeout"] = (self._timeout, read_timeout(request.url or "", self._timeout))
        return super().send(request, *args, **kwargs)


def make_consul(settings: ConsulSettings) -> consul.Consul:
    """A py-consul client for ``settings`` whose every request has a timeout."""
    client = consul.Consul(
        host=settings.host,
        port=settings.port,
        token=settings.token,
        scheme=settings.scheme,
        verify=settings.verify,
        cert=settings.cert,
    )
    # py-consul lets CONSUL_HTTP_TOKEN override the token it is given; ours is the one to use.
    client.token = settings.token
    adapter = _TimeoutAdapter(settings.timeout)
    client.http.session.mount("http://", adapter)
    client.http.session.mount("https://", adapter)
    return client
