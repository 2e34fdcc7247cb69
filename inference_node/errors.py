"""Errors raised inside an inference node, and the one place that maps them to gRPC codes.

NodeError
├── RequestError                 the caller sent something we will not run
│   ├── InvalidImage             bytes that are not a usable image
│   ├── InvalidParameter         conf / iou / max_det / classes out of range
│   ├── ModelNotFound            the request names a model this node does not serve
│   ├── ModelNotAllowed          the request names a model outside this node's allow-list
│   ├── ModelTooLarge            the requested model is larger than the whole model memory budget
│   ├── MalformedRequest         the request bytes are not a valid protobuf message
│   └── StreamIdle               a stream sent no frame for longer than the idle timeout
├── Unavailable                  the node cannot take the request right now
│   ├── NoModelLoaded            no model has gone live yet
│   ├── Draining                 the node is shutting down
│   └── ModelLoadFailed          an on-demand model failed to load; the next request retries
├── Overloaded                   the request queue is full
└── SwapError                    a candidate model was refused; the old one keeps serving
    ├── ArtifactError            the model file cannot be fetched right now (transient)
    │   └── ArtifactRefused      the artifact can never be fetched as given (permanent)
    ├── DigestMismatch           the file's sha256 is not the expected one
    ├── LoadError                the file was verified but could not be built into a model
    ├── ValidationFailed         a validation gate refused the candidate
    └── Superseded               a newer swap request replaced this one before it went live
        └── LoadCancelled        the load was cancelled mid-fetch or mid-build

Every ``SwapError`` says whether trying the same model again later may work: ``transient``
(a class attribute; ``ValidationFailed`` decides per gate). Transient: network timeouts,
connection refused or reset, HTTP 5xx and 429. Permanent: a malformed sha256, an unsupported
URI scheme, HTTP 404/403/410, a missing or non-regular file, a digest mismatch, a corrupt
checkpoint, an artifact over the size limit, a failed class/compat/calibration gate.
"""

from __future__ import annotations

import grpc


class NodeError(Exception):
    """Base of every error an inference node raises on purpose."""


class RequestError(NodeError):
    """The caller sent something the node will not run."""


class InvalidImage(RequestError):
    """The image bytes are empty, undecodable, truncated, too large or of an unsupported format."""


class InvalidParameter(RequestError):
    """A detection parameter (conf, iou, max_det, classes) is out of range."""


class ModelNotFound(RequestError):
    """The request names a model this node does not serve."""


class ModelNotAllowed(RequestError):
    """The request names a model that is not on this node's allow-list for on-demand loading."""


class ModelTooLarge(RequestError):
    """The requested model's weights are larger than the node's whole model memory budget."""


class MalformedRequest(RequestError):
    """The request bytes could not be parsed as the method's protobuf message."""


class StreamIdle(RequestError):
    """A stream with no frame in flight sent nothing for longer than the idle timeout."""


class Unavailable(NodeError):
    """The node cannot take requests right now; retrying elsewhere or later may work."""


class NoModelLoaded(Unavailable):
    """No model has gone live on this node yet."""


class Draining(Unavailable):
    """The node is shutting down and takes no new requests."""


class ModelLoadFailed(Unavailable):
    """A model requested on demand could not be looked up or loaded; nothing was cached."""


class Overloaded(NodeError):
    """The node's request queue is full."""


class SwapError(NodeError):
    """A candidate model was refused; the node keeps serving its current model."""

    transient: bool = False
    """Whether trying the same model again later may work (a retry with back-off)."""


class ArtifactError(SwapError):
    """The model file cannot be fetched right now: a timeout, a dropped connection, HTTP 5xx."""

    transient = True


class ArtifactRefused(ArtifactError):
    """The artifact can never be fetched as given: bad digest format, scheme, 404, too large."""

    transient = False


class DigestMismatch(SwapError):
    """The model file's sha256 differs from the expected digest."""


class LoadError(SwapError):
    """The verified model file could not be built into a working model."""


TRANSIENT_GATES = frozenset({"latency"})
"""Gates whose verdict depends on the moment (a busy device), not on the model file."""


class ValidationFailed(SwapError):
    """A validation gate refused the candidate model."""

    def __init__(self, message: str, *, gate: str) -> None:
        super().__init__(message)
        self.gate = gate
        self.transient = gate in TRANSIENT_GATES


class Superseded(SwapError):
    """A newer swap request replaced this one before it went live."""


class LoadCancelled(Superseded):
    """The load was cancelled (a newer model is wanted, or the node stops) mid-fetch or build."""


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and message a caller sees for ``exc``."""
    match exc:
        case InvalidImage() | InvalidParameter() | MalformedRequest():
            return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        case StreamIdle():
            return grpc.StatusCode.DEADLINE_EXCEEDED, str(exc)
        case ModelNotFound():
            return grpc.StatusCode.NOT_FOUND, str(exc)
        case ModelNotAllowed():
            return grpc.StatusCode.PERMISSION_DENIED, str(exc)
        case ModelTooLarge():
            return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
        case Overloaded():
            return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
        case Unavailable():
            return grpc.StatusCode.UNAVAILABLE, str(exc)
        case _:
            return grpc.StatusCode.INTERNAL, "internal error while running the model"
