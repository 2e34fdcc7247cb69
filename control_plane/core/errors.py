"""Errors the control plane raises on purpose.

ControlPlaneError
├── RequestRefused           what the operator asked for cannot be done as asked
│   ├── SpecInvalid          the rollout request is malformed (steps, canary percent, thresholds)
│   ├── RolloutConflict      a rollout is already running in the group
│   ├── ModelUnknown         the model is not in the registry
│   ├── GroupUnknown         no such group, or none of its nodes is live to pick canaries from
│   ├── NothingToDo          nothing would change (no rollout running, model already stable)
│   ├── GroupLost            Consul does not explain what the group's nodes serve: `ctl adopt`
│   └── AdoptRefused         the group cannot be adopted as asked (a tie, nothing served, ...)
└── BackendError             the control plane could not reach its own dependencies
    ├── StoreConflict        a check-and-set write lost to a concurrent writer; re-read and retry
    ├── Deposed              this replica's session no longer holds the leader lock; nothing written
    ├── StoreUnavailable     the store (Consul) could not be reached or refused the request
    ├── RecordCorrupt        a stored rollout document is not valid; it needs fixing by hand
    └── NodeUnreachable      a node's Status RPC failed or timed out

``RequestRefused`` errors go back to the operator as they are; ``BackendError`` errors are
retried by the controller on its next tick.
"""

from __future__ import annotations


class ControlPlaneError(Exception):
    """Base of every error the control plane raises on purpose."""


class RequestRefused(ControlPlaneError):
    """What the operator asked for cannot be done as asked; the message says why."""


class SpecInvalid(RequestRefused):
    """The rollout request is malformed: bad steps, canary percent or thresholds."""


class RolloutConflict(RequestRefused):
    """A rollout is already running in the group; promote or abort it first."""


class ModelUnknown(RequestRefused):
    """The named model is not in the registry."""


class GroupUnknown(RequestRefused):
    """No such group, or a canary rollout found none of the group's nodes live."""


class NothingToDo(RequestRefused):
    """The request would change nothing: no rollout to promote or abort, model already stable."""


class GroupLost(RequestRefused):
    """Consul's state does not explain what the group's nodes serve (wiped, partly restored);
    nothing moves in it until the operator runs ``ctl adopt``."""


class AdoptRefused(RequestRefused):
    """The group cannot be adopted as asked: nothing served, a tie, an unknown ``--stable``."""


class BackendError(ControlPlaneError):
    """The control plane could not reach the store or a node; retrying may work."""


class StoreConflict(BackendError):
    """A check-and-set write lost to a concurrent writer; re-read the key and try again."""


class Deposed(BackendError):
    """The tick's write was fenced off: this replica's session no longer holds the leader lock."""


class StoreUnavailable(BackendError):
    """The store (Consul) could not be reached or refused the request; retrying may work."""


class RecordCorrupt(BackendError):
    """A stored rollout document is not valid JSON of the expected shape; fix or delete it."""


class NodeUnreachable(BackendError):
    """A node's GetStats RPC failed or timed out."""


class MetricsUnavailable(BackendError):
    """The metrics backend (Prometheus) could not be queried or answered something unusable."""
