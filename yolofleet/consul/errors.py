"""Errors of the Consul client layer. py-consul and requests exceptions never leave it.

::

    ConsulError
    ├── ConsulConfigError        the address, token or TLS settings cannot be used
    ├── ConsulUnavailable        no answer: refused, dropped, timed out, or a 5xx from the agent
    ├── ConsulRejected           the agent answered 4xx: it will not accept this request as sent
    ├── SessionNotFound          the session is gone (expired, destroyed, or the agent lost it)
    └── CASConflict              a check-and-set update kept losing to other writers and gave up
"""

from __future__ import annotations


class ConsulError(Exception):
    """Base of every error the Consul client layer raises."""


class ConsulConfigError(ConsulError):
    """The Consul address, token or TLS settings are malformed or point at missing files."""


class ConsulUnavailable(ConsulError):
    """Consul could not be reached or did not answer in time; retrying later may succeed."""


class ConsulRejected(ConsulError):
    """Consul refused the request (bad request, ACL denied); retrying it unchanged will not help."""


class SessionNotFound(ConsulError):
    """The session no longer exists, so it can neither be renewed nor used to acquire a key."""


class CASConflict(ConsulError):
    """A read-modify-write found the key changed by another writer on every attempt."""
