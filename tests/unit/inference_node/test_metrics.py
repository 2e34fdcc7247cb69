"""The swap-failure stages the node exports at zero cover every refusal the node can count."""

from __future__ import annotations

import inspect
import re

from inference_node.errors import Superseded, SwapError, ValidationFailed
from inference_node.swapping import validate
from inference_node.telemetry.metrics import SWAP_FAILURE_STAGES, NodeMetrics


def _subclasses(base: type[SwapError]) -> set[type[SwapError]]:
    found: set[type[SwapError]] = set()
    for sub in base.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def test_every_refusal_class_and_gate_is_a_declared_stage() -> None:
    """The agent counts a refusal under its gate (``ValidationFailed``) or its class name;
    a superseded load is not a refusal."""
    counted = {
        error.__name__
        for error in _subclasses(SwapError)
        if error.__module__.startswith("inference_node.")  # not other tests' own
        and not issubclass(error, Superseded | ValidationFailed)
    }
    gates = set(re.findall(r'gate="(\w+)"', inspect.getsource(validate)))

    assert gates  # the pattern still finds the gates
    assert counted | gates == set(SWAP_FAILURE_STAGES)


def test_every_stage_is_exported_at_zero_before_any_failure() -> None:
    metrics = NodeMetrics()
    sample = metrics.registry.get_sample_value

    before = {stage: sample("yolofleet_swap_failures_total", {"stage": stage}) for stage in
              SWAP_FAILURE_STAGES}  # fmt: skip
    metrics.swap_failed("latency")

    assert before == dict.fromkeys(SWAP_FAILURE_STAGES, 0.0)
    assert sample("yolofleet_swap_failures_total", {"stage": "latency"}) == 1.0
