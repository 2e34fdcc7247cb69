from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelRecord(_message.Message):
    __slots__ = ("name", "uri", "sha256", "size", "format", "class_names", "input_size", "task", "created_unix", "parent", "notes", "metadata_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    uri: str
    sha256: str
    size: int
    format: str
    class_names: _containers.RepeatedScalarFieldContainer[str]
    input_size: int
    task: str
    created_unix: float
    parent: str
    notes: str
    metadata_json: str
    def __init__(self, name: _Optional[str] = ..., uri: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., format: _Optional[str] = ..., class_names: _Optional[_Iterable[str]] = ..., input_size: _Optional[int] = ..., task: _Optional[str] = ..., created_unix: _Optional[float] = ..., parent: _Optional[str] = ..., notes: _Optional[str] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class RegisterModelRequest(_message.Message):
    __slots__ = ("path", "name", "uri", "parent", "notes", "metadata_json")
    PATH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    path: str
    name: str
    uri: str
    parent: str
    notes: str
    metadata_json: str
    def __init__(self, path: _Optional[str] = ..., name: _Optional[str] = ..., uri: _Optional[str] = ..., parent: _Optional[str] = ..., notes: _Optional[str] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "invalid")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    INVALID_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelRecord]
    invalid: _containers.RepeatedCompositeFieldContainer[InvalidRecord]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelRecord, _Mapping]]] = ..., invalid: _Optional[_Iterable[_Union[InvalidRecord, _Mapping]]] = ...) -> None: ...

class InvalidRecord(_message.Message):
    __slots__ = ("key", "reason")
    KEY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    key: str
    reason: str
    def __init__(self, key: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class StartRolloutRequest(_message.Message):
    __slots__ = ("group", "model", "canary_percent", "steps", "hold_s", "thresholds")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CANARY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    HOLD_S_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    group: str
    model: str
    canary_percent: int
    steps: _containers.RepeatedScalarFieldContainer[int]
    hold_s: float
    thresholds: Thresholds
    def __init__(self, group: _Optional[str] = ..., model: _Optional[str] = ..., canary_percent: _Optional[int] = ..., steps: _Optional[_Iterable[int]] = ..., hold_s: _Optional[float] = ..., thresholds: _Optional[_Union[Thresholds, _Mapping]] = ...) -> None: ...

class Thresholds(_message.Message):
    __slots__ = ("error_rate_increase", "p99_latency_ratio", "latency_floor_s", "detections_drift", "confidence_drift", "class_mix_distance", "min_samples", "min_latency_samples", "analysis_deadline_s", "report_deadline_s", "consecutive_failures", "alpha", "class_share_drop")
    ERROR_RATE_INCREASE_FIELD_NUMBER: _ClassVar[int]
    P99_LATENCY_RATIO_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FLOOR_S_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_DRIFT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_DRIFT_FIELD_NUMBER: _ClassVar[int]
    CLASS_MIX_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    MIN_LATENCY_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    REPORT_DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    CLASS_SHARE_DROP_FIELD_NUMBER: _ClassVar[int]
    error_rate_increase: float
    p99_latency_ratio: float
    latency_floor_s: float
    detections_drift: float
    confidence_drift: float
    class_mix_distance: float
    min_samples: int
    min_latency_samples: int
    analysis_deadline_s: float
    report_deadline_s: float
    consecutive_failures: int
    alpha: float
    class_share_drop: float
    def __init__(self, error_rate_increase: _Optional[float] = ..., p99_latency_ratio: _Optional[float] = ..., latency_floor_s: _Optional[float] = ..., detections_drift: _Optional[float] = ..., confidence_drift: _Optional[float] = ..., class_mix_distance: _Optional[float] = ..., min_samples: _Optional[int] = ..., min_latency_samples: _Optional[int] = ..., analysis_deadline_s: _Optional[float] = ..., report_deadline_s: _Optional[float] = ..., consecutive_failures: _Optional[int] = ..., alpha: _Optional[float] = ..., class_share_drop: _Optional[float] = ...) -> None: ...

class GroupRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class PromoteRequest(_message.Message):
    __slots__ = ("group", "full")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    group: str
    full: bool
    def __init__(self, group: _Optional[str] = ..., full: _Optional[bool] = ...) -> None: ...

class UndoRequest(_message.Message):
    __slots__ = ("group", "to_model")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TO_MODEL_FIELD_NUMBER: _ClassVar[int]
    group: str
    to_model: str
    def __init__(self, group: _Optional[str] = ..., to_model: _Optional[str] = ...) -> None: ...

class AdoptRequest(_message.Message):
    __slots__ = ("group", "stable")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    STABLE_FIELD_NUMBER: _ClassVar[int]
    group: str
    stable: str
    def __init__(self, group: _Optional[str] = ..., stable: _Optional[str] = ...) -> None: ...

class CheckResult(_message.Message):
    __slots__ = ("name", "outcome", "canary_value", "baseline_value", "threshold", "canary_samples", "baseline_samples", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CANARY_VALUE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CANARY_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    BASELINE_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    outcome: str
    canary_value: float
    baseline_value: float
    threshold: float
    canary_samples: int
    baseline_samples: int
    reason: str
    def __init__(self, name: _Optional[str] = ..., outcome: _Optional[str] = ..., canary_value: _Optional[float] = ..., baseline_value: _Optional[float] = ..., threshold: _Optional[float] = ..., canary_samples: _Optional[int] = ..., baseline_samples: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Rollout(_message.Message):
    __slots__ = ("group", "phase", "stable", "canary", "canary_nodes", "step_index", "steps", "reason", "checks", "revision", "phase_since_unix", "thresholds", "hold_s", "failing_assessments", "intent_id", "pending", "intents", "stable_sha256", "canary_sha256", "lost")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    STABLE_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    CANARY_NODES_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PHASE_SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    HOLD_S_FIELD_NUMBER: _ClassVar[int]
    FAILING_ASSESSMENTS_FIELD_NUMBER: _ClassVar[int]
    INTENT_ID_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    STABLE_SHA256_FIELD_NUMBER: _ClassVar[int]
    CANARY_SHA256_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    group: str
    phase: str
    stable: str
    canary: str
    canary_nodes: _containers.RepeatedScalarFieldContainer[str]
    step_index: int
    steps: _containers.RepeatedScalarFieldContainer[int]
    reason: str
    checks: _containers.RepeatedCompositeFieldContainer[CheckResult]
    revision: int
    phase_since_unix: float
    thresholds: Thresholds
    hold_s: float
    failing_assessments: int
    intent_id: str
    pending: PendingIntent
    intents: _containers.RepeatedCompositeFieldContainer[IntentOutcome]
    stable_sha256: str
    canary_sha256: str
    lost: str
    def __init__(self, group: _Optional[str] = ..., phase: _Optional[str] = ..., stable: _Optional[str] = ..., canary: _Optional[str] = ..., canary_nodes: _Optional[_Iterable[str]] = ..., step_index: _Optional[int] = ..., steps: _Optional[_Iterable[int]] = ..., reason: _Optional[str] = ..., checks: _Optional[_Iterable[_Union[CheckResult, _Mapping]]] = ..., revision: _Optional[int] = ..., phase_since_unix: _Optional[float] = ..., thresholds: _Optional[_Union[Thresholds, _Mapping]] = ..., hold_s: _Optional[float] = ..., failing_assessments: _Optional[int] = ..., intent_id: _Optional[str] = ..., pending: _Optional[_Union[PendingIntent, _Mapping]] = ..., intents: _Optional[_Iterable[_Union[IntentOutcome, _Mapping]]] = ..., stable_sha256: _Optional[str] = ..., canary_sha256: _Optional[str] = ..., lost: _Optional[str] = ...) -> None: ...

class PendingIntent(_message.Message):
    __slots__ = ("id", "intent", "model", "requested_unix")
    ID_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_UNIX_FIELD_NUMBER: _ClassVar[int]
    id: str
    intent: str
    model: str
    requested_unix: float
    def __init__(self, id: _Optional[str] = ..., intent: _Optional[str] = ..., model: _Optional[str] = ..., requested_unix: _Optional[float] = ...) -> None: ...

class IntentOutcome(_message.Message):
    __slots__ = ("id", "intent", "result", "detail", "at_unix", "superseded_by")
    ID_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_BY_FIELD_NUMBER: _ClassVar[int]
    id: str
    intent: str
    result: str
    detail: str
    at_unix: float
    superseded_by: str
    def __init__(self, id: _Optional[str] = ..., intent: _Optional[str] = ..., result: _Optional[str] = ..., detail: _Optional[str] = ..., at_unix: _Optional[float] = ..., superseded_by: _Optional[str] = ...) -> None: ...

class HistoryEntry(_message.Message):
    __slots__ = ("model", "previous", "outcome", "reason", "started_unix", "ended_unix")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_FIELD_NUMBER: _ClassVar[int]
    ENDED_UNIX_FIELD_NUMBER: _ClassVar[int]
    model: str
    previous: str
    outcome: str
    reason: str
    started_unix: float
    ended_unix: float
    def __init__(self, model: _Optional[str] = ..., previous: _Optional[str] = ..., outcome: _Optional[str] = ..., reason: _Optional[str] = ..., started_unix: _Optional[float] = ..., ended_unix: _Optional[float] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[HistoryEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[HistoryEntry, _Mapping]]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("group",)
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("group", "node_id", "phase", "model", "sha256", "last_error", "endpoint", "device", "updated_unix", "desired")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    group: str
    node_id: str
    phase: str
    model: str
    sha256: str
    last_error: str
    endpoint: str
    device: str
    updated_unix: float
    desired: str
    def __init__(self, group: _Optional[str] = ..., node_id: _Optional[str] = ..., phase: _Optional[str] = ..., model: _Optional[str] = ..., sha256: _Optional[str] = ..., last_error: _Optional[str] = ..., endpoint: _Optional[str] = ..., device: _Optional[str] = ..., updated_unix: _Optional[float] = ..., desired: _Optional[str] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes", "invalid")
    NODES_FIELD_NUMBER: _ClassVar[int]
    INVALID_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    invalid: _containers.RepeatedCompositeFieldContainer[InvalidRecord]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., invalid: _Optional[_Iterable[_Union[InvalidRecord, _Mapping]]] = ...) -> None: ...

class ListGroupsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListGroupsResponse(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, groups: _Optional[_Iterable[str]] = ...) -> None: ...
