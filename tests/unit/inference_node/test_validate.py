from __future__ import annotations

import numpy as np
import pytest

from inference_node.errors import ValidationFailed
from inference_node.model import ModelSpec
from inference_node.swapping import validate
from tests.fakes import SHAPES, make_ref

REF = make_ref("cand")
SPEC = ModelSpec(class_names=SHAPES, input_size=160, task="detect")


@pytest.mark.parametrize(
    ("candidate", "incumbent", "policy", "refused"),
    [
        pytest.param(SPEC, SPEC, validate.ValidationPolicy(), False, id="same-classes"),
        pytest.param(SPEC, None, validate.ValidationPolicy(), False, id="first-model"),
        pytest.param(
            ModelSpec(class_names=("a", "b"), input_size=160, task="detect"),
            SPEC, validate.ValidationPolicy(), True, id="changed-classes-refused",
        ),
        pytest.param(
            ModelSpec(class_names=("a", "b"), input_size=160, task="detect"),
            SPEC, validate.ValidationPolicy(allow_class_change=True), False, id="change-allowed",
        ),
        pytest.param(
            SPEC, None, validate.ValidationPolicy(pinned_classes=("x",)), True, id="pinned",
        ),
    ],
)  # fmt: skip
def test_class_gate(
    candidate: ModelSpec,
    incumbent: ModelSpec | None,
    policy: validate.ValidationPolicy,
    refused: bool,
) -> None:
    if refused:
        with pytest.raises(ValidationFailed) as caught:
            validate.check_classes(REF, candidate, incumbent=incumbent, policy=policy)
        assert caught.value.gate == "classes"
    else:
        assert validate.check_classes(REF, candidate, incumbent=incumbent, policy=policy).passed


@pytest.mark.parametrize(
    ("candidate", "policy", "message"),
    [
        pytest.param(
            ModelSpec(class_names=SHAPES, input_size=160, task="segment"),
            validate.ValidationPolicy(), "task 'segment'", id="wrong-task",
        ),
        pytest.param(
            ModelSpec(class_names=SHAPES, input_size=100, task="detect"),
            validate.ValidationPolicy(), "multiple of 32", id="odd-size",
        ),
        pytest.param(
            ModelSpec(class_names=SHAPES, input_size=320, task="detect"),
            validate.ValidationPolicy(require_same_input_size=True), "differs", id="size-pinned",
        ),
    ],
)  # fmt: skip
def test_compat_gate_refuses(
    candidate: ModelSpec, policy: validate.ValidationPolicy, message: str
) -> None:
    with pytest.raises(ValidationFailed, match=message):
        validate.check_compat(REF, candidate, incumbent=SPEC, policy=policy)


def test_calibration_gate_counts_detections_per_image() -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    cases = (
        validate.CalibrationCase(name="one.png", image=image, min_detections=1),
        validate.CalibrationCase(name="three.png", image=image, min_detections=3),
    )
    policy = validate.ValidationPolicy(calibration=cases)

    passed = validate.check_calibration(REF, [1, 3], policy)
    with pytest.raises(
        ValidationFailed, match=r"2 detections on calibration/three.png \(expected >= 3\)"
    ) as refused:
        validate.check_calibration(REF, [5, 2], policy)

    assert passed.passed
    assert passed.detail == "4 detections over 2 calibration images"
    assert refused.value.gate == "calibration"


def test_calibration_gate_without_a_set_is_skipped() -> None:
    skipped = validate.check_calibration(REF, [], validate.ValidationPolicy())

    assert skipped.passed
    assert skipped.detail.startswith("skipped")


@pytest.mark.parametrize(
    ("candidate_ms", "incumbent_ms", "refused"),
    [
        pytest.param([10.0, 11.0, 12.0], [10.0, 10.0, 10.0], False, id="similar"),
        pytest.param([16.0, 15.5, 30.0], [10.0, 10.0, 10.0], True, id="over-1.5x"),
        pytest.param([14.0, 30.0, 100.0], [10.0, 10.0, 10.0], False, id="best-ignores-contention"),
        pytest.param([11.0, 19.6, 25.0], [10.5, 10.4, 30.0], False, id="contended-rounds"),
        pytest.param([16.0, 16.5, 17.0], [10.0, 12.0, 30.0], True, id="slow-in-every-round"),
    ],
)
def test_latency_gate_compares_best_rounds(
    candidate_ms: list[float], incumbent_ms: list[float], refused: bool
) -> None:
    policy = validate.ValidationPolicy(latency_factor=1.5)

    if refused:
        with pytest.raises(ValidationFailed, match="too slow"):
            validate.check_latency(
                REF, candidate_ms=candidate_ms, incumbent_ms=incumbent_ms, policy=policy
            )
    else:
        result = validate.check_latency(
            REF, candidate_ms=candidate_ms, incumbent_ms=incumbent_ms, policy=policy
        )
        assert result.passed
