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
    ├── ArtifactError            the model file cannot be read or fetched
    ├── DigestMismatch           the file's sha256 is not the expected one
    ├── LoadError                the file was verified but could not be built into a model
    ├── ValidationFailed         a validation gate refused the candidate
    └── Superseded               a newer swap request replaced this one before it went live
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


class ArtifactError(SwapError):
    """The model file cannot be read or fetched."""


class DigestMismatch(SwapError):
    """The model file's sha256 differs from the expected digest."""


class LoadError(SwapError):
    """The verified model file could not be built into a working model."""


class ValidationFailed(SwapError):
    """A validation gate refused the candidate model."""

    def __init__(self, message: str, *, gate: str) -> None:
        super().__init__(message)
        self.gate = gate


class Superseded(SwapError):
    """A newer swap request replaced this one before it went live."""


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
