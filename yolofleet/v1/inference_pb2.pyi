from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SlotPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SLOT_PHASE_UNSPECIFIED: _ClassVar[SlotPhase]
    SLOT_PHASE_EMPTY: _ClassVar[SlotPhase]
    SLOT_PHASE_LOADING: _ClassVar[SlotPhase]
    SLOT_PHASE_SERVING: _ClassVar[SlotPhase]
    SLOT_PHASE_FAILED: _ClassVar[SlotPhase]
    SLOT_PHASE_DRAINING: _ClassVar[SlotPhase]
SLOT_PHASE_UNSPECIFIED: SlotPhase
SLOT_PHASE_EMPTY: SlotPhase
SLOT_PHASE_LOADING: SlotPhase
SLOT_PHASE_SERVING: SlotPhase
SLOT_PHASE_FAILED: SlotPhase
SLOT_PHASE_DRAINING: SlotPhase

class DetectRequest(_message.Message):
    __slots__ = ("image", "model", "conf", "iou", "max_det", "classes", "request_id")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CONF_FIELD_NUMBER: _ClassVar[int]
    IOU_FIELD_NUMBER: _ClassVar[int]
    MAX_DET_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    model: str
    conf: float
    iou: float
    max_det: int
    classes: _containers.RepeatedScalarFieldContainer[int]
    request_id: str
    def __init__(self, image: _Optional[bytes] = ..., model: _Optional[str] = ..., conf: _Optional[float] = ..., iou: _Optional[float] = ..., max_det: _Optional[int] = ..., classes: _Optional[_Iterable[int]] = ..., request_id: _Optional[str] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x1", "y1", "x2", "y2")
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X2_FIELD_NUMBER: _ClassVar[int]
    Y2_FIELD_NUMBER: _ClassVar[int]
    x1: float
    y1: float
    x2: float
    y2: float
    def __init__(self, x1: _Optional[float] = ..., y1: _Optional[float] = ..., x2: _Optional[float] = ..., y2: _Optional[float] = ...) -> None: ...

class Detection(_message.Message):
    __slots__ = ("box", "confidence", "class_id", "class_name")
    BOX_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    box: Box
    confidence: float
    class_id: int
    class_name: str
    def __init__(self, box: _Optional[_Union[Box, _Mapping]] = ..., confidence: _Optional[float] = ..., class_id: _Optional[int] = ..., class_name: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    sha256: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("decode_ms", "queue_ms", "inference_ms", "total_ms")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    queue_ms: float
    inference_ms: float
    total_ms: float
    def __init__(self, decode_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("request_id", "detections", "model", "image_width", "image_height", "timings", "generation", "batch_size", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    model: ModelInfo
    image_width: int
    image_height: int
    timings: Timings
    generation: int
    batch_size: int
    error: FrameError
    def __init__(self, request_id: _Optional[str] = ..., detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ..., model: _Optional[_Union[ModelInfo, _Mapping]] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., generation: _Optional[int] = ..., batch_size: _Optional[int] = ..., error: _Optional[_Union[FrameError, _Mapping]] = ...) -> None: ...

class FrameError(_message.Message):
    __slots__ = ("code", "status", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    status: str
    message: str
    def __init__(self, code: _Optional[int] = ..., status: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeviceMemory(_message.Message):
    __slots__ = ("available", "used_bytes", "total_bytes", "utilization_percent")
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_PERCENT_FIELD_NUMBER: _ClassVar[int]
    available: bool
    used_bytes: int
    total_bytes: int
    utilization_percent: int
    def __init__(self, available: _Optional[bool] = ..., used_bytes: _Optional[int] = ..., total_bytes: _Optional[int] = ..., utilization_percent: _Optional[int] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("active_model", "phase", "generation", "device", "last_swap_unix", "last_swap_duration_s", "last_error", "memory", "pending", "loading_model")
    ACTIVE_MODEL_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    LAST_SWAP_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_SWAP_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    LOADING_MODEL_FIELD_NUMBER: _ClassVar[int]
    active_model: ModelInfo
    phase: SlotPhase
    generation: int
    device: str
    last_swap_unix: float
    last_swap_duration_s: float
    last_error: str
    memory: DeviceMemory
    pending: int
    loading_model: ModelInfo
    def __init__(self, active_model: _Optional[_Union[ModelInfo, _Mapping]] = ..., phase: _Optional[_Union[SlotPhase, str]] = ..., generation: _Optional[int] = ..., device: _Optional[str] = ..., last_swap_unix: _Optional[float] = ..., last_swap_duration_s: _Optional[float] = ..., last_error: _Optional[str] = ..., memory: _Optional[_Union[DeviceMemory, _Mapping]] = ..., pending: _Optional[int] = ..., loading_model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("since_unix",)
    SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    since_unix: float
    def __init__(self, since_unix: _Optional[float] = ...) -> None: ...

class ModelStats(_message.Message):
    __slots__ = ("model", "requests", "errors", "latency_bounds_s", "latency_counts", "images", "detections", "confidence_sum", "class_counts")
    class ClassCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BOUNDS_S_FIELD_NUMBER: _ClassVar[int]
    LATENCY_COUNTS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_SUM_FIELD_NUMBER: _ClassVar[int]
    CLASS_COUNTS_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    requests: int
    errors: int
    latency_bounds_s: _containers.RepeatedScalarFieldContainer[float]
    latency_counts: _containers.RepeatedScalarFieldContainer[int]
    images: int
    detections: int
    confidence_sum: float
    class_counts: _containers.ScalarMap[str, int]
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., latency_bounds_s: _Optional[_Iterable[float]] = ..., latency_counts: _Optional[_Iterable[int]] = ..., images: _Optional[int] = ..., detections: _Optional[int] = ..., confidence_sum: _Optional[float] = ..., class_counts: _Optional[_Mapping[str, int]] = ...) -> None: ...

class NodeStats(_message.Message):
    __slots__ = ("window_start_unix", "window_end_unix", "models")
    WINDOW_START_UNIX_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_UNIX_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    window_start_unix: float
    window_end_unix: float
    models: _containers.RepeatedCompositeFieldContainer[ModelStats]
    def __init__(self, window_start_unix: _Optional[float] = ..., window_end_unix: _Optional[float] = ..., models: _Optional[_Iterable[_Union[ModelStats, _Mapping]]] = ...) -> None: ...
