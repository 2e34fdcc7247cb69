"""grpcurl-style discovery: list services and call Detect knowing only what reflection says."""

from __future__ import annotations

from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.integration.harness import RunningNode, encode
from yolofleet.synthetic import render_image


def test_reflection_lists_services_and_describes_detect(shared_node: RunningNode) -> None:
    database = ProtoReflectionDescriptorDatabase(shared_node.channel)
    pool = descriptor_pool.DescriptorPool(database)

    services = set(database.get_services())
    method = pool.FindServiceByName("yolofleet.v1.Inference").FindMethodByName("Detect")

    assert {"yolofleet.v1.Inference", "grpc.health.v1.Health"} <= services
    assert method.input_type.full_name == "yolofleet.v1.DetectRequest"
    assert "image" in method.input_type.fields_by_name


def test_detect_callable_from_reflected_descriptors_alone(shared_node: RunningNode) -> None:
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(shared_node.channel))
    method = pool.FindServiceByName("yolofleet.v1.Inference").FindMethodByName("Detect")
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    call = shared_node.channel.unary_unary(
        "/yolofleet.v1.Inference/Detect",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )

    reply = call(request_class(image=encode(render_image(3).image), request_id="r"), timeout=30)

    assert reply.request_id == "r"
    assert reply.model.name == "shapes"
    assert isinstance(reply, response_class)
