"""The model registry: ``models/<name>`` records in Consul, written once and read by everyone.

:func:`register_model` hashes a model file, asks the model itself what it detects
(:func:`describe_model`) and writes the record create-only, so a registered name always means
the same artifact: registering it again with the same digest returns the stored record (the
first registration's notes and metadata stay), with another digest is refused.
:func:`get_model` reads one record; :func:`scan_models` reads all of them, keeping the records
it cannot use apart as :class:`~yolofleet.records.InvalidRecord` (key and reason) so one bad
record never fails a listing; :func:`list_models` is its valid half.

Every function blocks (Consul over HTTP, hashing, loading a model); asyncio callers run them
with ``asyncio.to_thread``. Consul errors surface as the :mod:`yolofleet.consul.errors` tree.

::

    RegistryError
    ├── ModelUnreadable          the file cannot be read, or is not a model ultralytics can open
    ├── RegistryConflict         the name is already registered with a different artifact
    ├── ModelUnknown             no model of that name is registered
    └── MalformedRecord          the stored record cannot be read back
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolofleet.consul import ConsulClient, KVPair
from yolofleet.digests import file_digest
from yolofleet.keys import KeyLayout
from yolofleet.offline import ensure_offline
from yolofleet.records import (
    InvalidRecord,
    ModelRecord,
    RecordInvalid,
    model_from_json,
    to_json,
)

logger = logging.getLogger(__name__)

DEFAULT_INPUT_SIZE = 640
"""What ultralytics assumes when a checkpoint does not record its training image size."""


class RegistryError(Exception):
    """Base of every error the model registry raises."""


class ModelUnreadable(RegistryError):
    """The model file is missing, unreadable, or not a model ultralytics can open."""


class RegistryConflict(RegistryError):
    """The name is already registered with a different artifact digest."""


class ModelUnknown(RegistryError):
    """No model of that name is registered."""


class MalformedRecord(RegistryError):
    """A stored model record is not valid; someone wrote it by hand or with another version."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelListing:
    """Every model record under the registry's prefix: the usable ones and the skipped ones."""

    records: tuple[ModelRecord, ...] = ()
    invalid: tuple[InvalidRecord, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelDescription:
    """What a model file says about itself."""

    class_names: tuple[str, ...]
    input_size: int
    task: str


def describe_model(path: Path) -> ModelDescription:
    """Open ``path`` with ultralytics and read its class names, input size and task."""
    if not path.is_file():
        raise ModelUnreadable(f"model file {path} does not exist or is not a file")
    ensure_offline()
    from ultralytics import YOLO  # type: ignore[attr-defined]  # late: offline mode first

    try:
        yolo = YOLO(str(path))
        names = yolo.names
        description = ModelDescription(
            class_names=tuple(str(names[index]) for index in sorted(names)),
            input_size=_input_size(path, getattr(yolo.model, "args", None)),
            task=str(yolo.task),
        )
    except Exception as exc:  # unpickling and building raise anything; all mean "not a model"
        raise ModelUnreadable(f"{path} is not a model ultralytics can open: {exc}") from exc
    return description


def register_model(
    client: ConsulClient,
    layout: KeyLayout,
    *,
    path: Path,
    name: str,
    uri: str | None = None,
    parent: str | None = None,
    notes: str = "",
    metadata: Mapping[str, Any] | None = None,
    now: float,
    digest: tuple[str, int] | None = None,
) -> ModelRecord:
    """Register ``path`` as ``name`` (create-only) and return the stored record.

    ``uri`` is where nodes fetch the artifact from (default: the file's absolute ``file://``
    URI). ``digest`` is ``digest_and_size(path)`` when the caller already read the file.
    Raises ``ValueError`` for a name that cannot be a key, ``ModelUnreadable``,
    ``RegistryConflict`` or ``MalformedRecord``.
    """
    key = layout.model(name)
    sha256, size = digest if digest is not None else digest_and_size(path)
    existing = _read(client, key, name)
    if existing is None:
        record = _new_record(
            path,
            name=name,
            sha256=sha256,
            size=size,
            uri=uri or path.resolve().as_uri(),
            parent=parent,
            notes=notes,
            metadata=metadata,
            now=now,
        )
        if client.put(key, to_json(record), cas=0):
            logger.info(
                "model registered name=%s sha256=%s size=%d uri=%s",
                name, sha256[:12], size, record.uri,
            )  # fmt: skip
            return record
        existing = _read(client, key, name)
        if existing is None:
            raise RegistryConflict(
                f"model {name!r}: {key} was written and deleted by someone else while "
                "registering; try again"
            )
    return _same_artifact(existing, sha256=sha256, path=path)


def get_model(client: ConsulClient, layout: KeyLayout, name: str) -> ModelRecord:
    """The record of ``name``; raises ``ModelUnknown`` or ``MalformedRecord``."""
    key = layout.model(name)
    record = _read(client, key, name)
    if record is None:
        raise ModelUnknown(f"model {name!r} is not registered (no key {key}); register it first")
    return record


def scan_models(client: ConsulClient, layout: KeyLayout) -> ModelListing:
    """Every record by key; invalid ones are logged and returned apart with their reason."""
    records: list[ModelRecord] = []
    invalid: list[InvalidRecord] = []
    for pair in client.list(layout.models):
        if pair.key == layout.models:
            continue  # the folder key some tools create
        try:
            records.append(_listed(pair, layout))
        except MalformedRecord as exc:
            logger.warning("model record skipped key=%s reason=%s", pair.key, exc)
            invalid.append(InvalidRecord(key=pair.key, reason=str(exc)))
    return ModelListing(records=tuple(records), invalid=tuple(invalid))


def list_models(client: ConsulClient, layout: KeyLayout) -> list[ModelRecord]:
    """Every valid record, sorted by name; invalid ones are logged and skipped."""
    return list(scan_models(client, layout).records)


def _new_record(
    path: Path,
    *,
    name: str,
    sha256: str,
    size: int,
    uri: str,
    parent: str | None,
    notes: str,
    metadata: Mapping[str, Any] | None,
    now: float,
) -> ModelRecord:
    """The record to store, as it reads back from its own JSON."""
    description = describe_model(path)
    record = ModelRecord(
        name=name,
        uri=uri,
        sha256=sha256,
        size=size,
        class_names=description.class_names,
        input_size=description.input_size,
        task=description.task,
        created=now,
        parent=parent,
        notes=notes,
        metadata=dict(metadata or {}),
    )
    try:
        return model_from_json(to_json(record))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model {name!r}: metadata must be plain JSON values: {exc}") from exc


def _same_artifact(existing: ModelRecord, *, sha256: str, path: Path) -> ModelRecord:
    if existing.sha256 != sha256:
        raise RegistryConflict(
            f"model {existing.name!r} is already registered with sha256 "
            f"{existing.sha256[:12]}… ({existing.uri}), but {path} has sha256 {sha256[:12]}…; "
            "a registered name always means the same artifact, so register this file under "
            "a new name"
        )
    logger.info("model already registered name=%s sha256=%s", existing.name, sha256[:12])
    return existing


def _read(client: ConsulClient, key: str, name: str) -> ModelRecord | None:
    pair = client.get(key)
    return None if pair is None else _parse(pair.value, key=key, name=name)


def _listed(pair: KVPair, layout: KeyLayout) -> ModelRecord:
    name = pair.key.removeprefix(layout.models)
    if "/" in name:
        raise MalformedRecord(f"{pair.key} is not a model key: it is nested below {layout.models}")
    return _parse(pair.value, key=pair.key, name=name)


def _parse(value: bytes, *, key: str, name: str) -> ModelRecord:
    try:
        record = model_from_json(value)
    except RecordInvalid as exc:
        raise MalformedRecord(f"{key} does not hold a valid model record: {exc}") from exc
    if record.name != name:
        raise MalformedRecord(f"{key} holds the record of model {record.name!r}, not {name!r}")
    return record


def digest_and_size(path: Path) -> tuple[str, int]:
    """(sha256, size) of a model file; ``ModelUnreadable`` when it cannot be read."""
    try:
        return file_digest(path)
    except OSError as exc:
        raise ModelUnreadable(f"cannot read model file {path}: {exc.strerror}") from exc


def _input_size(path: Path, args: object) -> int:
    imgsz = args.get("imgsz") if isinstance(args, dict) else None
    if imgsz is None:
        logger.warning(
            "model records no training image size path=%s assumed=%d", path, DEFAULT_INPUT_SIZE
        )
        return DEFAULT_INPUT_SIZE
    if isinstance(imgsz, list | tuple):
        imgsz = max(imgsz)
    return int(imgsz)
