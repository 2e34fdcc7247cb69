"""The strict JSON decoder on its own: nested records, unions, fixed tuples, bad annotations."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pytest

from yolofleet.strictjson import ShapeError, build, load_object


class Color(StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True, slots=True, kw_only=True)
class Pin:
    name: str
    sha256: str
    size: int = 0

    def __post_init__(self) -> None:
        if len(self.sha256) != 4:
            raise ValueError(f"sha256 {self.sha256!r} must have 4 characters")


@dataclass(frozen=True, slots=True, kw_only=True)
class Holder:
    stable: Pin | None = None
    pins: tuple[Pin, ...] = ()
    pair: tuple[str, int] = ("a", 1)
    color: Color = Color.RED
    either: int | str = 0
    labels: dict[str, str] = field(default_factory=dict)
    extra: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsupported:
    things: list[str]


def test_nested_records_tuples_enums_and_unions_are_built() -> None:
    raw = {
        "stable": {"name": "m", "sha256": "abcd", "size": 3},
        "pins": [{"name": "a", "sha256": "0000"}],
        "pair": ["b", 2],
        "color": "blue",
        "either": "text",
        "labels": {"k": "v"},
        "extra": [1, {"x": None}],
    }

    holder = build(Holder, raw, what="holder")

    assert holder.stable == Pin(name="m", sha256="abcd", size=3)
    assert holder.pins == (Pin(name="a", sha256="0000"),)
    assert holder.pair == ("b", 2)
    assert holder.color is Color.BLUE
    assert holder.either == "text"
    assert holder.labels == {"k": "v"}
    assert holder.extra == [1, {"x": None}]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(
            {"stable": {"name": "m", "sha256": 5}},
            "field 'stable.sha256' must be a string, got 5",
            id="nested-field",
        ),
        pytest.param(
            {"stable": {"name": "m"}}, "missing field 'stable.sha256'", id="nested-missing"
        ),
        pytest.param(
            {"stable": "m"}, "field 'stable' must be an object or null", id="nested-string"
        ),
        pytest.param(
            {"pins": [{"name": "a", "sha256": "0000"}, {"name": 1, "sha256": "0000"}]},
            "field 'pins[1].name' must be a string, got 1",
            id="tuple-of-records",
        ),
        pytest.param(
            {"stable": {"name": "m", "sha256": "toolong"}},
            "field 'stable' is invalid: sha256 'toolong' must have 4 characters",
            id="post-init-refusal",
        ),
        pytest.param({"pair": ["b"]}, "field 'pair' must be a list of 2 items", id="fixed-tuple"),
        pytest.param({"pair": ["b", "c"]}, "field 'pair[1]' must be an integer", id="fixed-item"),
        pytest.param({"color": "green"}, "field 'color' must be one of 'red', 'blue'", id="enum"),
        pytest.param({"either": 1.5}, "field 'either' must be an integer or a string", id="union"),
        pytest.param(
            {"labels": {"k": 1}}, "field \"labels['k']\" must be a string", id="map-value"
        ),
    ],
)
def test_a_wrong_shape_names_the_path_to_the_field(raw: dict[str, Any], reason: str) -> None:
    with pytest.raises(ShapeError) as caught:
        build(Holder, raw, what="holder")

    assert reason in str(caught.value)


def test_an_annotation_it_cannot_check_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="cannot check"):
        build(Unsupported, {"things": ["a"]}, what="unsupported")


def test_long_values_are_shortened_in_the_reason() -> None:
    with pytest.raises(ShapeError) as caught:
        build(Pin, {"name": ["x" * 200], "sha256": "abcd"}, what="pin")

    assert len(str(caught.value)) < 120
    assert str(caught.value).endswith("...")


def test_load_object_refuses_non_objects_and_non_json_numbers() -> None:
    assert load_object(b'{"a": 1}', what="doc") == {"a": 1}
    with pytest.raises(ShapeError, match="doc must be a JSON object, got a number"):
        load_object(b"7", what="doc")
    with pytest.raises(ShapeError, match="-Infinity is not a number JSON allows"):
        load_object(b'{"a": -Infinity}', what="doc")
