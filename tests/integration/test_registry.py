"""The model registry against an in-process dev Consul over real HTTP, with real model files."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from yolofleet.consul import ConsulClient, ConsulSettings
from yolofleet.consul.devserver import DevConsul
from yolofleet.demo_models import DemoModels
from yolofleet.digests import file_sha256
from yolofleet.keys import KeyLayout
from yolofleet.records import to_json
from yolofleet.registry import (
    MalformedRecord,
    ModelUnknown,
    ModelUnreadable,
    RegistryConflict,
    get_model,
    list_models,
    register_model,
    scan_models,
)

NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def consul() -> Iterator[DevConsul]:
    with DevConsul() as dev:
        yield dev


@pytest.fixture
def client(consul: DevConsul) -> Iterator[ConsulClient]:
    client = ConsulClient(ConsulSettings.from_address(consul.address))
    yield client
    client.close()


@pytest.fixture
def layout() -> KeyLayout:
    """A prefix no other test uses."""
    return KeyLayout(f"yolofleet-test/{uuid.uuid4().hex[:12]}/")


def test_register_reads_classes_size_and_task_from_the_file(
    client: ConsulClient, layout: KeyLayout, models: DemoModels
) -> None:
    record = register_model(
        client, layout, path=models.v1, name="shapes-v1", notes="first", now=NOW
    )

    assert record.class_names == ("circle", "square", "triangle")
    assert record.input_size == 160
    assert record.task == "detect"
    assert record.sha256 == file_sha256(models.v1)
    assert record.size == models.v1.stat().st_size
    assert record.uri == models.v1.resolve().as_uri()
    assert record.created == NOW
    assert get_model(client, layout, "shapes-v1") == record


def test_register_keeps_the_uri_parent_and_metadata_given(
    client: ConsulClient, layout: KeyLayout, models: DemoModels
) -> None:
    uri = "http://artifacts.example:8000/artifacts/" + file_sha256(models.v2)

    record = register_model(
        client,
        layout,
        path=models.v2,
        name="shapes-v2",
        uri=uri,
        parent="shapes-v1",
        metadata={"epochs": 10, "data": {"seed": 1}},
        now=NOW,
    )

    assert get_model(client, layout, "shapes-v2") == record
    assert (record.uri, record.parent) == (uri, "shapes-v1")
    assert record.metadata == {"epochs": 10, "data": {"seed": 1}}


def test_registering_the_same_artifact_again_returns_the_stored_record(
    client: ConsulClient, layout: KeyLayout, models: DemoModels
) -> None:
    first = register_model(client, layout, path=models.v1, name="shapes", notes="a", now=NOW)
    index = client.get(layout.model("shapes"))

    again = register_model(client, layout, path=models.v1, name="shapes", notes="b", now=NOW + 60)

    assert again == first
    assert client.get(layout.model("shapes")) == index


def test_registering_another_artifact_under_a_taken_name_is_refused(
    client: ConsulClient, layout: KeyLayout, models: DemoModels
) -> None:
    first = register_model(client, layout, path=models.v1, name="shapes", now=NOW)

    with pytest.raises(RegistryConflict, match="'shapes' is already registered with sha256"):
        register_model(client, layout, path=models.v2, name="shapes", now=NOW + 60)

    assert get_model(client, layout, "shapes") == first


def test_a_file_that_is_not_a_model_is_refused_and_nothing_is_written(
    client: ConsulClient, layout: KeyLayout, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")

    with pytest.raises(ModelUnreadable, match=r"junk\.pt is not a model"):
        register_model(client, layout, path=junk, name="junk", now=NOW)

    assert client.get(layout.model("junk")) is None


def test_get_unknown_model_names_it(client: ConsulClient, layout: KeyLayout) -> None:
    with pytest.raises(ModelUnknown, match="model 'nope' is not registered"):
        get_model(client, layout, "nope")


def test_get_malformed_record_is_reported(client: ConsulClient, layout: KeyLayout) -> None:
    client.put(layout.model("broken"), b"{not json")

    with pytest.raises(MalformedRecord, match="broken does not hold a valid model record"):
        get_model(client, layout, "broken")


def test_list_skips_and_logs_malformed_records(
    client: ConsulClient,
    layout: KeyLayout,
    models: DemoModels,
    caplog: pytest.LogCaptureFixture,
) -> None:
    v1 = register_model(client, layout, path=models.v1, name="a-v1", now=NOW)
    v2 = register_model(client, layout, path=models.v2, name="b-v2", now=NOW)
    client.put(layout.model("broken"), b"{not json")
    client.put(layout.model("empty"), b"{}")
    client.put(layout.model("renamed"), to_json(v1))  # holds the record of another name
    caplog.set_level(logging.WARNING, logger="yolofleet.registry")

    listed = list_models(client, layout)

    assert listed == [v1, v2]
    messages = " ".join(record.getMessage() for record in caplog.records)
    for name in ("broken", "empty", "renamed"):
        assert f"key={layout.model(name)} " in messages


def test_scan_returns_invalid_records_apart_with_their_reasons(
    client: ConsulClient, layout: KeyLayout, models: DemoModels
) -> None:
    v1 = register_model(client, layout, path=models.v1, name="a-v1", now=NOW)
    bad = json.loads(to_json(v1)) | {"name": "ints", "class_names": [1, 2]}
    client.put(layout.model("ints"), json.dumps(bad).encode())
    client.put(layout.model("list"), b'["x"]')

    listing = scan_models(client, layout)

    assert listing.records == (v1,)
    reasons = {entry.key: entry.reason for entry in listing.invalid}
    assert set(reasons) == {layout.model("ints"), layout.model("list")}
    assert "field 'class_names[0]' must be a string, got 1" in reasons[layout.model("ints")]
    assert "must be a JSON object" in reasons[layout.model("list")]
    assert list_models(client, layout) == [v1]


def test_list_of_an_empty_registry_is_empty(client: ConsulClient, layout: KeyLayout) -> None:
    assert list_models(client, layout) == []
