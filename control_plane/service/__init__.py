"""The ControlPlane gRPC service: protobuf in, our types through, protobuf out (wire only)."""
